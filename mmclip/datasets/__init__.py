from .captions import CocoCaptions, FlickrCaptions
from .categories import imagenet_categories
from .clip_benchmark import ClipBenchmarkDataset
from .custom import IMG_EXTENSIONS, CustomDataset, DatasetLayoutError, read_class_names
from .imagenet import ImageNet
from .imagenet_shifts import ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2, ObjectNet
from .transforms import *  # noqa: F401,F403

__all__ = [
    'ClipBenchmarkDataset', 'CocoCaptions', 'FlickrCaptions',
    'imagenet_categories', 'IMG_EXTENSIONS', 'CustomDataset', 'DatasetLayoutError',
    'read_class_names', 'ImageNet', 'ImageNetA', 'ImageNetR', 'ImageNetSketch', 'ImageNetV2',
    'ObjectNet'
]
