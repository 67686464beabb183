"""Geometric transforms on uint8 [H, W, C] images, with torchvision's size arithmetic.

Resizes go through ``mmcv.imresize``; with ``backend='pillow'`` that is PIL's
``Image.resize``, the call torchvision's ``Resize`` makes on PIL images, so outputs equal
timm's eval transforms pixel for pixel. Resampling is per channel, so BGR order is safe.
"""
import math
from typing import Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from mmclip.registry import TRANSFORMS

BACKENDS = ('pillow', 'cv2')
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'lanczos')
EDGES = ('short', 'long', 'width', 'height')
CROP_MODES = ('center', 'squash')
DIRECTIONS = ('horizontal', 'vertical')


def _check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f'{name} must be one of {tuple(choices)}; got {value!r}.')


def _resize(results: dict, height: int, width: int, interpolation: str, backend: str) -> dict:
    results = dict(results)
    results['img'] = mmcv.imresize(
        results['img'], (width, height), interpolation=interpolation, backend=backend)
    results['img_shape'] = (height, width)
    return results


def edge_resize_shape(height: int, width: int, scale: int, edge: str) -> Tuple[int, int]:
    """(H, W) after resizing ``edge`` to ``scale`` with the aspect ratio kept.

    The other edge is truncated, ``int(scale * other / edge)``, exactly as torchvision's
    ``Resize(int)`` computes it (not rounded), so sizes match timm's eval transform.
    """
    _check_choice('edge', edge, EDGES)
    scale_width = (edge == 'width' or (edge == 'short' and width < height)
                   or (edge == 'long' and width > height))
    if scale_width:
        return int(scale * height / width), scale
    return scale, int(scale * width / height)


@TRANSFORMS.register_module()
class ResizeEdge(BaseTransform):
    """Resize so that one edge equals ``scale``, keeping the aspect ratio.

    Config keys:
        scale: target length of ``edge`` in pixels.
        edge: ``'short'``, ``'long'``, ``'width'`` or ``'height'``.
        backend: ``'pillow'`` (torchvision/timm-identical) or ``'cv2'``.
        interpolation: ``'nearest'``, ``'bilinear'``, ``'bicubic'`` or ``'lanczos'``.
    """

    def __init__(self, scale: int, edge: str = 'short', backend: str = 'pillow',
                 interpolation: str = 'bicubic') -> None:
        _check_choice('edge', edge, EDGES)
        _check_choice('backend', backend, BACKENDS)
        _check_choice('interpolation', interpolation, INTERPOLATIONS)
        self.scale, self.edge = scale, edge
        self.backend, self.interpolation = backend, interpolation

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        new_h, new_w = edge_resize_shape(h, w, self.scale, self.edge)
        return _resize(results, new_h, new_w, self.interpolation, self.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, edge={self.edge!r}, '
                f'backend={self.backend!r}, interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class CropPctResize(BaseTransform):
    """timm's eval resize: scale so that a center crop of ``crop_size`` keeps ``crop_pct``.

    ``scale = floor(crop_size / crop_pct)``; ``crop_mode='center'`` resizes the short
    edge to ``scale`` (aspect ratio kept), ``'squash'`` resizes both edges to ``scale``.
    Follow it with ``CenterCrop(crop_size)``, as timm's ``transforms_imagenet_eval`` does.

    Config keys:
        crop_size: the square crop that follows, in pixels.
        crop_pct: fraction of the resized image the crop keeps, in (0, 1].
        crop_mode: ``'center'`` or ``'squash'``.
        backend / interpolation: as in ``ResizeEdge``.
    """

    def __init__(self, crop_size: int, crop_pct: float, crop_mode: str = 'center',
                 backend: str = 'pillow', interpolation: str = 'bicubic') -> None:
        if not 0 < crop_pct <= 1:
            raise ValueError(f'crop_pct must be in (0, 1]; got {crop_pct!r}.')
        _check_choice('crop_mode', crop_mode, CROP_MODES)
        _check_choice('backend', backend, BACKENDS)
        _check_choice('interpolation', interpolation, INTERPOLATIONS)
        self.crop_size, self.crop_pct, self.crop_mode = crop_size, crop_pct, crop_mode
        self.backend, self.interpolation = backend, interpolation
        self.scale = math.floor(crop_size / crop_pct)

    def transform(self, results: dict) -> dict:
        if self.crop_mode == 'squash':
            new_h = new_w = self.scale
        else:
            h, w = results['img'].shape[:2]
            new_h, new_w = edge_resize_shape(h, w, self.scale, 'short')
        return _resize(results, new_h, new_w, self.interpolation, self.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'crop_pct={self.crop_pct}, crop_mode={self.crop_mode!r}, '
                f'backend={self.backend!r}, interpolation={self.interpolation!r})')


def _pad_to_at_least(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero-pad evenly (extra pixel right/bottom) up to (height, width), as torchvision."""
    h, w = img.shape[:2]
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if pad_h == 0 and pad_w == 0:
        return img
    pads = [(pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2)]
    pads += [(0, 0)] * (img.ndim - 2)
    return np.pad(img, pads)


@TRANSFORMS.register_module()
class CenterCrop(BaseTransform):
    """Crop the center ``crop_size``; images smaller than it are zero-padded first.

    Offsets are ``int(round((H - h) / 2))`` (Python's round-half-to-even), as in
    torchvision's ``CenterCrop``.

    Config keys:
        crop_size: int (square) or (height, width).
    """

    def __init__(self, crop_size: Union[int, Tuple[int, int]]) -> None:
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f'crop_size must be a positive int or (height, width); '
                             f'got {crop_size!r}.')
        self.crop_size = tuple(crop_size)

    def transform(self, results: dict) -> dict:
        crop_h, crop_w = self.crop_size
        img = _pad_to_at_least(results['img'], crop_h, crop_w)
        h, w = img.shape[:2]
        top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
        results = dict(results)
        results['img'] = np.ascontiguousarray(img[top:top + crop_h, left:left + crop_w])
        results['img_shape'] = (crop_h, crop_w)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(crop_size={self.crop_size})'


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Crop a random area and aspect ratio, then resize to ``scale`` (torchvision's rule).

    Up to ``max_attempts`` boxes are drawn with area fraction in ``crop_ratio_range`` and
    log-uniform aspect ratio in ``aspect_ratio_range``; if none fits, the largest
    center box within the ratio range is used. Draws use ``np.random``, which mmengine
    seeds per worker.

    Config keys:
        scale: output size, int (square) or (height, width).
        crop_ratio_range: (min, max) fraction of the image area.
        aspect_ratio_range: (min, max) width / height.
        max_attempts: draws before the center fallback.
        backend / interpolation: as in ``ResizeEdge``.
    """

    def __init__(self,
                 scale: Union[int, Tuple[int, int]],
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10,
                 backend: str = 'pillow',
                 interpolation: str = 'bicubic') -> None:
        if not 0 < crop_ratio_range[0] <= crop_ratio_range[1] <= 1:
            raise ValueError(f'crop_ratio_range must satisfy 0 < min <= max <= 1; '
                             f'got {crop_ratio_range!r}.')
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f'aspect_ratio_range must satisfy 0 < min <= max; '
                             f'got {aspect_ratio_range!r}.')
        _check_choice('backend', backend, BACKENDS)
        _check_choice('interpolation', interpolation, INTERPOLATIONS)
        self.scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
        self.crop_ratio_range = tuple(crop_ratio_range)
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.max_attempts = max_attempts
        self.backend, self.interpolation = backend, interpolation

    def crop_box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """(top, left, h, w) of the crop, following torchvision's ``get_params``."""
        area = height * width
        log_ratio = (math.log(self.aspect_ratio_range[0]), math.log(self.aspect_ratio_range[1]))
        for _ in range(self.max_attempts):
            target_area = area * np.random.uniform(*self.crop_ratio_range)
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                return (np.random.randint(0, height - h + 1),
                        np.random.randint(0, width - w + 1), h, w)
        in_ratio = width / height
        if in_ratio < self.aspect_ratio_range[0]:
            w, h = width, int(round(width / self.aspect_ratio_range[0]))
        elif in_ratio > self.aspect_ratio_range[1]:
            w, h = int(round(height * self.aspect_ratio_range[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def transform(self, results: dict) -> dict:
        img = results['img']
        top, left, h, w = self.crop_box(*img.shape[:2])
        results = dict(results, img=img[top:top + h, left:left + w])
        return _resize(results, *self.scale, self.interpolation, self.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'crop_ratio_range={self.crop_ratio_range}, '
                f'aspect_ratio_range={self.aspect_ratio_range}, backend={self.backend!r}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class RandomFlip(BaseTransform):
    """Flip with probability ``prob``; records ``flip`` and ``flip_direction``.

    Config keys:
        prob: flip probability in [0, 1].
        direction: ``'horizontal'`` or ``'vertical'``.
    """

    def __init__(self, prob: float = 0.5, direction: str = 'horizontal') -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1]; got {prob!r}.')
        _check_choice('direction', direction, DIRECTIONS)
        self.prob, self.direction = prob, direction

    def transform(self, results: dict) -> dict:
        results = dict(results)
        flip = bool(np.random.rand() < self.prob)
        if flip:
            axis = 1 if self.direction == 'horizontal' else 0
            results['img'] = np.ascontiguousarray(np.flip(results['img'], axis=axis))
        results['flip'] = flip
        results['flip_direction'] = self.direction if flip else None
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob}, direction={self.direction!r})'


@TRANSFORMS.register_module()
class CropBorder(BaseTransform):
    """Cut ``pixels`` from each side of the image: PIL's ``img.crop((p, p, W - p,
    H - p))``, which is what WiSE-FT's ObjectNet loader does before its transform.

    Config keys:
        pixels: how many pixels to drop on each of the four sides (> 0); an image not
            larger than twice that is an error naming it.
    """

    def __init__(self, pixels: int) -> None:
        if not isinstance(pixels, int) or pixels <= 0:
            raise ValueError(f'pixels must be a positive int; got {pixels!r}.')
        self.pixels = pixels

    def transform(self, results: dict) -> dict:
        p = self.pixels
        h, w = results['img'].shape[:2]
        if h <= 2 * p or w <= 2 * p:
            raise ValueError(f"Cannot crop a {p}-pixel border from the {w}x{h} image "
                             f"'{results.get('img_path')}'.")
        results = dict(results)
        results['img'] = np.ascontiguousarray(results['img'][p:h - p, p:w - p])
        results['img_shape'] = (h - 2 * p, w - 2 * p)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(pixels={self.pixels})'
