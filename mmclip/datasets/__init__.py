from .categories import imagenet_categories
from .custom import IMG_EXTENSIONS, CustomDataset, DatasetLayoutError, read_class_names
from .imagenet import ImageNet
from .transforms import *  # noqa: F401,F403

__all__ = [
    'imagenet_categories', 'IMG_EXTENSIONS', 'CustomDataset', 'DatasetLayoutError',
    'read_class_names', 'ImageNet'
]
