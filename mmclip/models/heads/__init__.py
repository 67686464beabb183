from .clip_linear_head import CLIPLinearClsHead
from .vision_transformer_head import VisionTransformerClsHead, predictions_from_logits
from .zero_shot_head import ZeroShotClsHead

__all__ = ['CLIPLinearClsHead', 'VisionTransformerClsHead', 'predictions_from_logits',
           'ZeroShotClsHead']
