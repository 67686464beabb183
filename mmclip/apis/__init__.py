from mmclip.datasets import imagenet_categories

from .inference import ImageClassificationInferencer, inference_model
from .model_zoo import ModelInfo, get_model, get_model_info, list_models, model_index_path

__all__ = [
    'imagenet_categories', 'ImageClassificationInferencer', 'inference_model', 'ModelInfo',
    'get_model', 'get_model_info', 'list_models', 'model_index_path'
]
