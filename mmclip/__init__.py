"""mmclip: CLIP ViT-B/16 and ViT-B/32 ImageNet-1k classifiers, OpenMMLab style."""
from .apis import ImageClassificationInferencer, get_model, inference_model, list_models
from .version import __version__

__all__ = [
    '__version__', 'get_model', 'list_models', 'inference_model', 'ImageClassificationInferencer'
]
