"""Decode an image file into the uint8 BGR array every other transform expects."""
import os
import warnings
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image, UnidentifiedImageError

from mmclip.registry import TRANSFORMS

ON_ERROR_CHOICES = ('raise', 'skip')
# 16-bit modes hold values up to 65535; PIL's convert('RGB') would clip them at 255.
_SIXTEEN_BIT_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')
# round(v / 257) is 255 from here up; clipping to it keeps v + 128 within uint16.
_ROUNDS_TO_255 = 65407
# The most pixels a file may claim (width x height, from its header) to be decoded: PIL's
# default MAX_IMAGE_PIXELS (1/4 GiB as RGB), fixed here so that a user or library that
# lifts PIL's limit does not lift mmclip's. A header can claim 100k x 100k in 50 bytes.
MAX_IMAGE_PIXELS = 89_478_485


class ImageReadError(OSError):
    """An image file that PIL cannot decode; the message names the file and the cause."""


def sixteen_to_eight_bits(wide: np.ndarray) -> np.ndarray:
    """16-bit gray (uint16, or int32 of PIL's mode 'I', clipped to 0..65535) -> uint8
    ``round(v / 257)``, in integers: one uint16 temporary (2 bytes a pixel) instead of
    float64 copies (8 bytes a pixel each). ``round(v / 257) == (v + 128) // 257``: 257 is
    odd, so v / 257 is never halfway."""
    narrow = np.empty(wide.shape, dtype=np.uint16)
    np.clip(wide, 0, _ROUNDS_TO_255, out=narrow, casting='unsafe')
    narrow += 128
    narrow //= 257
    return narrow.astype(np.uint8)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """``img.convert('RGB')`` as uint8 [H, W, 3], with 16-bit grayscale scaled to 8 bits
    (``v / 257``) instead of clipped at 255."""
    if img.mode in _SIXTEEN_BIT_MODES:
        img = Image.fromarray(sixteen_to_eight_bits(np.asarray(img)))
    return np.asarray(img.convert('RGB'))


def _check_pixels(img: Image.Image, path: str) -> None:
    """Refuse, before decoding, a file whose header claims more than ``MAX_IMAGE_PIXELS``:
    decoding allocates what the header claims."""
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            f"Cannot read image '{path}': its header claims {width}x{height} = "
            f"{width * height} pixels, more than mmclip's limit of {MAX_IMAGE_PIXELS} "
            f"(mmclip.datasets.transforms.loading.MAX_IMAGE_PIXELS)")


def read_rgb(path: str) -> np.ndarray:
    """Decode ``path`` as timm does, ``Image.open(path).convert('RGB')``, into uint8 [H, W, 3].

    The format is taken from the file's content, not its name, so a PNG behind a
    ``.JPEG`` name decodes. Every mode PIL opens is accepted: L, P, RGBA (alpha dropped,
    as in timm), CMYK, ...; 16-bit grayscale is scaled to 8 bits (``v / 257``) instead of
    being clipped at 255. EXIF orientation is not applied, as in timm and torchvision.

    Raises:
        ImageReadError: naming ``path`` for a missing, empty, truncated or non-image file,
            or one whose header claims more than ``MAX_IMAGE_PIXELS``.
    """
    try:
        with warnings.catch_warnings():
            # PIL warns of sizes past its limit; _check_pixels refuses them in one line.
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            _check_pixels(img, path)
            img.load()  # decode now: truncation only shows up while decoding
            return pil_to_rgb(img)
    except ImageReadError:
        raise
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
