from .formatting import PackInputs
from .loading import ImageReadError, LoadImageFromFile, pil_to_rgb, read_rgb
from .processing import (
                         CenterCrop,
                         CropBorder,
                         CropPctResize,
                         RandomFlip,
                         RandomResizedCrop,
                         ResizeEdge,
                         edge_resize_shape,
)
from .test_pipeline import build_test_pipeline

__all__ = [
    'PackInputs', 'ImageReadError', 'LoadImageFromFile', 'pil_to_rgb', 'read_rgb', 'CenterCrop',
    'CropBorder', 'CropPctResize', 'RandomFlip', 'RandomResizedCrop', 'ResizeEdge',
    'edge_resize_shape', 'build_test_pipeline'
]
