from .clip_loss import clip_contrastive_loss, gather_across_ranks
from .cross_entropy_loss import CrossEntropyLoss

__all__ = ['CrossEntropyLoss', 'clip_contrastive_loss', 'gather_across_ranks']
