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

__all__ = [
    'PackInputs', 'ImageReadError', 'LoadImageFromFile', 'pil_to_rgb', 'read_rgb', 'CenterCrop',
    'CropBorder', 'CropPctResize', 'RandomFlip', 'RandomResizedCrop', 'ResizeEdge',
    'edge_resize_shape'
]
