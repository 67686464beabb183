from .batch_augments import CutMix, Mixup, RandomBatchAugment  # noqa: F401
from .embed import PatchEmbed, resize_pos_embed
from .transformer import FFN, AttentionPool, DropPath, MultiheadAttention, TransformerEncoderLayer

__all__ = [
    'PatchEmbed', 'resize_pos_embed', 'FFN', 'AttentionPool', 'DropPath', 'MultiheadAttention',
    'TransformerEncoderLayer'
]
