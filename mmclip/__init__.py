"""mmclip: CLIP ViT-B/16 and ViT-B/32 ImageNet-1k classifiers, OpenMMLab style."""
from .version import __version__

__all__ = ['__version__']
