from .text_transformer import CLIPTextTransformer
from .vision_transformer import VisionTransformer

__all__ = ['CLIPTextTransformer', 'VisionTransformer']
