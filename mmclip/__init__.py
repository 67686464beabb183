"""mmclip: CLIP image classifiers (ImageNet fine-tuned and zero-shot, ViT-B/32 to
bigG/14), OpenMMLab style."""
from .apis import ImageClassificationInferencer, get_model, inference_model, list_models
from .version import __version__

__all__ = [
    '__version__', 'get_model', 'list_models', 'inference_model', 'ImageClassificationInferencer'
]
