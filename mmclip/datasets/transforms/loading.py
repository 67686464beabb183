"""Decode an image file into the uint8 BGR array every other transform expects."""
import os
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image, UnidentifiedImageError

from mmclip.registry import TRANSFORMS

ON_ERROR_CHOICES = ('raise', 'skip')
# 16-bit modes hold values up to 65535; PIL's convert('RGB') would clip them at 255.
_SIXTEEN_BIT_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')


class ImageReadError(OSError):
    """An image file that PIL cannot decode; the message names the file and the cause."""


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """``img.convert('RGB')`` as uint8 [H, W, 3], with 16-bit grayscale scaled to 8 bits
    (``v / 257``) instead of clipped at 255."""
    if img.mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.round(np.clip(wide, 0, 65535) / 257).astype(np.uint8))
    return np.asarray(img.convert('RGB'))


def read_rgb(path: str) -> np.ndarray:
    """Decode ``path`` as timm does, ``Image.open(path).convert('RGB')``, into uint8 [H, W, 3].

    The format is taken from the file's content, not its name, so a PNG behind a
    ``.JPEG`` name decodes. Every mode PIL opens is accepted: L, P, RGBA (alpha dropped,
    as in timm), CMYK, ...; 16-bit grayscale is scaled to 8 bits (``v / 257``) instead of
    being clipped at 255. EXIF orientation is not applied, as in timm and torchvision.

    Raises:
        ImageReadError: naming ``path`` for a missing, empty, truncated or non-image file.
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncation only shows up while decoding
            return pil_to_rgb(img)
    except UnidentifiedImageError:
        raise ImageReadError(f"Cannot read image '{path}': {_unidentified_reason(path)}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # e.g. a cut-off JPEG: "image file is truncated (54 bytes not processed)".
        raise ImageReadError(f"Cannot read image '{path}': {err}") from None


def _unidentified_reason(path: str) -> str:
    """Why PIL could not tell the format: PIL's own message repeats only the path."""
    if os.path.getsize(path) == 0:
        return 'the file is empty'
    return 'its content is not in any image format PIL can decode'


@TRANSFORMS.register_module()
class LoadImageFromFile(BaseTransform):
    """Load ``results['img_path']`` with PIL into ``results['img']``, uint8 [H, W, 3] BGR.

    BGR is the OpenMMLab convention; ``ClsDataPreprocessor(to_rgb=True)`` flips back
    on the model's device. Adds ``ori_shape`` and ``img_shape`` as (H, W).

    Config keys:
        on_error: ``'raise'`` (default) stops the run with an error naming the file;
            ``'skip'`` stands in a 1x1 black image and records the reason in
            ``results['load_error']`` so that the sample still flows through the
            pipeline, the batch and the distributed gather (every index is kept, in
            order), and the metric leaves it out, warns once per file and counts it.
    """

    def __init__(self, on_error: str = 'raise') -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f'on_error must be one of {ON_ERROR_CHOICES}; got {on_error!r}.')
        self.on_error = on_error

    def transform(self, results: dict) -> Optional[dict]:
        results = dict(results)
        try:
            rgb = read_rgb(results['img_path'])
            results['load_error'] = None
        except ImageReadError as err:
            if self.on_error == 'raise':
                raise ImageReadError(
                    f"{err}. To evaluate without unreadable images, run tools/test.py "
                    "with --skip-bad-images (LoadImageFromFile(on_error='skip')).") from None
            rgb = np.zeros((1, 1, 3), dtype=np.uint8)
            results['load_error'] = str(err)
        results['img'] = np.ascontiguousarray(rgb[..., ::-1])
        results['ori_shape'] = rgb.shape[:2]
        results['img_shape'] = rgb.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(on_error={self.on_error!r})'
