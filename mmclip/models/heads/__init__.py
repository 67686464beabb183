from .vision_transformer_head import VisionTransformerClsHead, predictions_from_logits
from .zero_shot_head import ZeroShotClsHead

__all__ = ['VisionTransformerClsHead', 'predictions_from_logits', 'ZeroShotClsHead']
