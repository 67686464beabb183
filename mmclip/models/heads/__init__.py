from .vision_transformer_head import VisionTransformerClsHead, predictions_from_logits

__all__ = ['VisionTransformerClsHead', 'predictions_from_logits']
