from .vision_transformer import VisionTransformer

__all__ = ['VisionTransformer']
