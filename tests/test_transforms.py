"""Loading and eval transforms, checked against PIL, torchvision and timm's own transforms."""
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from large_models import large_models
from mmcv.transforms import Compose
from mmengine.config import Config
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision import transforms as T

from mmclip.datasets.transforms import (
    CenterCrop,
    CropPctResize,
    ImageReadError,
    LoadImageFromFile,
    PackInputs,
    RandomFlip,
    RandomResizedCrop,
    ResizeEdge,
    pil_to_rgb,
)
from mmclip.registry import MODELS, TRANSFORMS

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted(p for p in (ROOT / 'tests' / 'data' / 'images').iterdir()
                if p.suffix in ('.png', '.jpg'))
# The 14 zoo configs and the timm model each one's weights come from.
ZOO = {
    'vit-base-p32_clip-openai-pre_3rdparty_in1k': 'vit_base_patch32_clip_224.openai_ft_in1k',
    'vit-base-p32_clip-laion2b-pre_3rdparty_in1k': 'vit_base_patch32_clip_224.laion2b_ft_in1k',
    'vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k':
    'vit_base_patch32_clip_224.laion2b_ft_in12k_in1k',
    'vit-base-p32_clip-openai-in12k-pre_3rdparty_in1k-384px':
    'vit_base_patch32_clip_384.openai_ft_in12k_in1k',
    'vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k-384px':
    'vit_base_patch32_clip_384.laion2b_ft_in12k_in1k',
    'vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k-448px':
    'vit_base_patch32_clip_448.laion2b_ft_in12k_in1k',
    'vit-base-p16_clip-openai-pre_3rdparty_in1k': 'vit_base_patch16_clip_224.openai_ft_in1k',
    'vit-base-p16_clip-laion2b-pre_3rdparty_in1k': 'vit_base_patch16_clip_224.laion2b_ft_in1k',
    'vit-base-p16_clip-openai-in12k-pre_3rdparty_in1k':
    'vit_base_patch16_clip_224.openai_ft_in12k_in1k',
    'vit-base-p16_clip-laion2b-in12k-pre_3rdparty_in1k':
    'vit_base_patch16_clip_224.laion2b_ft_in12k_in1k',
    'vit-base-p16_clip-openai-pre_3rdparty_in1k-384px': 'vit_base_patch16_clip_384.openai_ft_in1k',
    'vit-base-p16_clip-laion2b-pre_3rdparty_in1k-384px':
    'vit_base_patch16_clip_384.laion2b_ft_in1k',
    'vit-base-p16_clip-openai-in12k-pre_3rdparty_in1k-384px':
    'vit_base_patch16_clip_384.openai_ft_in12k_in1k',
    'vit-base-p16_clip-laion2b-in12k-pre_3rdparty_in1k-384px':
    'vit_base_patch16_clip_384.laion2b_ft_in12k_in1k',
}
# The ViT-L/14 and ViT-H/14 entries, whose tags large-models-facts.md states.
LARGE = {name: row.timm_tag for name, row in large_models().items()}


def timm_eval_transform(timm_name: str):
    # The meta device gives the model's pretrained config without allocating weights.
    with torch.device('meta'):
        model = timm.create_model(timm_name, pretrained=False)
    return create_transform(**resolve_data_config(model=model))


def our_eval(config: Config):
    """Our test pipeline + ClsDataPreprocessor: image path -> normalised [3, H, W]."""
    pipeline = Compose([TRANSFORMS.build(t) for t in config.test_dataloader.dataset.pipeline])
    preprocessor = MODELS.build(dict(type='ClsDataPreprocessor', **config.data_preprocessor))

    def run(path: Path) -> torch.Tensor:
        packed = pipeline(dict(img_path=str(path)))
        return preprocessor(dict(inputs=[packed['inputs']]))['inputs'][0]

    return run


def test_the_zoo_table_matches_the_reference():
    text = (ROOT / 'tests' / 'data' / 'reference' / 'model-zoo-facts.md').read_text()
    for name, timm_name in ZOO.items():
        assert f'| {name} | {timm_name} |' in text


@pytest.mark.parametrize('name', sorted(ZOO | LARGE))
def test_zoo_config_preprocessing_equals_timm(name):
    config = Config.fromfile(ROOT / 'configs' / 'clip' / f'{name}.py')
    ours, theirs = our_eval(config), timm_eval_transform({**ZOO, **LARGE}[name])
    for path in IMAGES:
        with Image.open(path) as img:
            expected = theirs(img.convert('RGB'))
        got = ours(path)
        assert got.shape == expected.shape, path.name
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=path.name)


@pytest.mark.parametrize('patch,size', [(32, 224), (16, 384)])
def test_seed_config_is_short_edge_resize_then_center_crop(patch, size):
    suffix = '' if size == 224 else f'-{size}px'
    name = f'vit-base-p{patch}_pt-64xb64_in1k{suffix}.py'
    config = Config.fromfile(ROOT / 'configs' / 'clip' / name)
    ours = our_eval(config)
    theirs = T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
        T.ToTensor(), T.Normalize((0.48145466, 0.4578275, 0.40821073),
                                  (0.26862954, 0.26130258, 0.27577711))])
    for path in IMAGES[:3]:
        with Image.open(path) as img:
            torch.testing.assert_close(ours(path), theirs(img.convert('RGB')), atol=1e-5, rtol=0)


def _save(img: Image.Image, path: Path, fmt: str) -> Path:
    img.save(path, format=fmt)
    return path


@pytest.mark.parametrize('mode', ['RGB', 'L', 'RGBA', 'P', 'CMYK', 'LA', '1'])
def test_load_any_mode_is_bgr_of_pil_convert_rgb(tmp_path, mode):
    with Image.open(IMAGES[0]) as src:
        img = src.convert(mode).resize((40, 30))
    fmt = 'JPEG' if mode in ('RGB', 'L', 'CMYK') else 'PNG'
    path = _save(img, tmp_path / 'x.JPEG', fmt)  # PNG content behind a .JPEG name too
    out = LoadImageFromFile()(dict(img_path=str(path)))
    with Image.open(path) as reread:
        rgb = np.asarray(reread.convert('RGB'))
    assert out['img'].dtype == np.uint8 and out['img'].shape == (30, 40, 3)
    np.testing.assert_array_equal(out['img'], rgb[..., ::-1])
    assert out['ori_shape'] == out['img_shape'] == (30, 40)
    assert out['load_error'] is None


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    wide = (np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) * 54).astype(np.uint16)
    path = _save(Image.fromarray(wide), tmp_path / 'deep.png', 'PNG')
    with Image.open(path) as img:
        assert img.mode.startswith('I')
    out = LoadImageFromFile()(dict(img_path=str(path)))['img']
    expected = np.round(wide / 257).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], expected)


@pytest.mark.parametrize('mode', ['I;16', 'I;16B', 'I'])
def test_sixteen_bit_file_decodes_equal_to_its_eight_bit_reference(tmp_path, mode):
    with Image.open(IMAGES[0]) as src:
        gray = np.asarray(src.convert('L').resize((40, 30)))
    reference = _save(Image.fromarray(gray), tmp_path / 'gray8.png', 'PNG')
    wide = gray.astype(np.uint16) * 257  # 0..255 -> 0..65535
    img = (Image.fromarray(wide.astype(np.int32)) if mode == 'I' else
           Image.frombytes(mode, (40, 30), wide.astype('>u2' if mode == 'I;16B' else '<u2')))
    # Pillow writes mode I (int32) as TIFF only.
    path = _save(img, tmp_path / 'gray16', 'TIFF' if mode == 'I' else 'PNG')
    with Image.open(path) as reread:
        assert reread.mode.startswith('I')
    out = LoadImageFromFile()(dict(img_path=str(path)))['img']
    expected = LoadImageFromFile()(dict(img_path=str(reference)))['img']
    np.testing.assert_array_equal(out, expected)
    assert len(np.unique(out)) > 100  # the photo's gray levels survive


def test_sixteen_bit_conversion_makes_no_float64_copies():
    wide = (np.arange(1000 * 1000, dtype=np.uint32) * 65 % 65536).astype(np.uint16)
    img = Image.fromarray(wide.reshape(1000, 1000))
    tracemalloc.start()
    try:
        rgb = pil_to_rgb(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(rgb[..., 0].ravel(), np.round(wide / 257).astype(np.uint8))
    # uint16 view + uint16 temporary + uint8 gray + uint8 RGB: 8 bytes a pixel; one float64
    # copy alone is 8, the former float64 path peaked at 24.
    assert peak < 10 * wide.size, peak / wide.size


def _png_claiming(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2,
                                                                0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


# Reads each file with 256 MiB of address space to spare: decoding what the headers claim
# (300 MB and 30 GB) would fail with MemoryError there instead of the one-line refusal.
_BOMB_SCRIPT = """
import json, resource, sys, time
from PIL import Image
from mmclip.datasets.transforms import ImageReadError, read_rgb
vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize'))
resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + (256 << 20), resource.RLIM_INFINITY))
results = []
for path, pil_limit in json.loads(sys.argv[1]):
    Image.MAX_IMAGE_PIXELS = pil_limit if pil_limit else None
    start = time.perf_counter()
    try:
        read_rgb(path)
        results.append(['decoded', time.perf_counter() - start])
    except ImageReadError as err:
        results.append([str(err), time.perf_counter() - start])
print(json.dumps(results))
"""


def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(tmp_path):
    huge, big = tmp_path / 'huge.png', tmp_path / 'big.png'
    huge.write_bytes(_png_claiming(100_000, 100_000))
    big.write_bytes(_png_claiming(10_000, 10_000))  # past PIL's limit, under twice it
    cases = [(str(huge), Image.MAX_IMAGE_PIXELS), (str(big), Image.MAX_IMAGE_PIXELS),
             (str(huge), 0)]  # 0: a library lifted PIL's limit
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, '-c', _BOMB_SCRIPT, json.dumps(cases)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'DecompressionBombWarning' not in result.stderr  # one error line, not PIL's warning
    results = json.loads(result.stdout)
    for (path, _), (message, seconds) in zip(cases, results):
        assert message.startswith(f"Cannot read image '{path}': ") and '\n' not in message
        assert seconds < 2
    assert results[1][0].endswith("its header claims 10000x10000 = 100000000 pixels, more than "
                                  "mmclip's limit of 89478485 "
                                  "(mmclip.datasets.transforms.loading.MAX_IMAGE_PIXELS)")
    assert 'claims 100000x100000 = 10000000000 pixels' in results[2][0]
    assert '10000000000 pixels' in results[0][0]  # PIL refuses this one itself


def _bad_files(tmp_path: Path) -> dict:
    good = tmp_path / 'good.JPEG'
    with Image.open(IMAGES[0]) as img:
        img.convert('RGB').save(good, format='JPEG')
    data = good.read_bytes()
    files = {'truncated': data[:len(data) // 2], 'empty': b'', 'text': b'not an image\n'}
    for name, content in files.items():
        (tmp_path / f'{name}.JPEG').write_bytes(content)
    return {name: tmp_path / f'{name}.JPEG' for name in files}


@pytest.mark.parametrize('kind,reason', [('truncated', 'image file is truncated'),
                                         ('empty', 'the file is empty'),
                                         ('text', 'its content is not in any image format')])
def test_unreadable_image_raises_naming_the_file(tmp_path, kind, reason):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(ImageReadError,
                       match=f"Cannot read image '{path}': {reason}.*--skip-bad-images"):
        LoadImageFromFile()(dict(img_path=str(path)))


def test_skip_mode_flows_a_placeholder_with_the_reason(tmp_path):
    path = _bad_files(tmp_path)['text']
    pipeline = Compose([LoadImageFromFile(on_error='skip'), ResizeEdge(8), CenterCrop(8),
                        PackInputs()])
    packed = pipeline(dict(img_path=str(path), gt_label=3))
    assert packed['inputs'].shape == (3, 8, 8)
    assert str(path) in packed['data_samples'].load_error
    assert packed['data_samples'].gt_label.tolist() == [3]


def test_bad_arguments_list_the_choices():
    with pytest.raises(ValueError, match="'raise', 'skip'"):
        LoadImageFromFile(on_error='ignore')
    with pytest.raises(ValueError, match="'center', 'squash'"):
        CropPctResize(224, 0.9, crop_mode='border')
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        CropPctResize(224, 1.2)
    with pytest.raises(ValueError, match="'short', 'long'"):
        ResizeEdge(224, edge='middle')


@pytest.mark.parametrize('hw', [(300, 451), (451, 300), (303, 384), (100, 100), (7, 1000)])
def test_resize_edge_sizes_equal_torchvision(hw):
    h, w = hw
    img = np.random.RandomState(0).randint(0, 256, (h, w, 3), dtype=np.uint8)
    ours = ResizeEdge(224)(dict(img=img))['img']
    theirs = np.asarray(T.Resize(224, interpolation=T.InterpolationMode.BICUBIC)(
        Image.fromarray(img)))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize('hw', [(5, 7), (8, 8), (9, 12), (30, 4)])
def test_center_crop_equals_torchvision_including_padding(hw):
    img = np.random.RandomState(1).randint(1, 256, hw + (3, ), dtype=np.uint8)
    ours = CenterCrop((6, 9))(dict(img=img))['img']
    theirs = np.asarray(T.CenterCrop((6, 9))(Image.fromarray(img)))
    np.testing.assert_array_equal(ours, theirs)


def test_random_resized_crop_follows_torchvision_box_rule():
    img = np.random.RandomState(2).randint(0, 256, (60, 90, 3), dtype=np.uint8)
    transform = RandomResizedCrop(32, crop_ratio_range=(0.3, 0.6))
    np.random.seed(0)
    out = transform(dict(img=img))
    np.random.seed(0)
    top, left, h, w = transform.crop_box(60, 90)
    assert 0.3 * 0.9 <= h * w / (60 * 90) <= 0.6 * 1.1
    assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    expected = np.asarray(Image.fromarray(img[top:top + h, left:left + w]).resize(
        (32, 32), Image.BICUBIC))
    np.testing.assert_array_equal(out['img'], expected)
    # No box fits a 1-pixel-wide image: the center fallback keeps the ratio range.
    assert transform.crop_box(40, 1) == ((40 - 1) // 2, 0, 1, 1)


def test_random_flip_flips_with_its_probability():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    always = RandomFlip(prob=1.0)(dict(img=img))
    np.testing.assert_array_equal(always['img'], img[:, ::-1])
    assert always['flip'] and always['flip_direction'] == 'horizontal'
    never = RandomFlip(prob=0.0, direction='vertical')(dict(img=img))
    np.testing.assert_array_equal(never['img'], img)
    np.random.seed(0)
    flips = [RandomFlip(prob=0.3)(dict(img=img))['flip'] for _ in range(2000)]
    assert 0.25 < np.mean(flips) < 0.35


def test_pack_inputs_keeps_bgr_chw_and_meta():
    img = np.random.RandomState(3).randint(0, 256, (4, 5, 3), dtype=np.uint8)
    packed = PackInputs()(dict(img=img, gt_label=7, img_path='a.JPEG', sample_idx=2,
                               ori_shape=(4, 5), img_shape=(4, 5)))
    assert packed['inputs'].dtype == torch.uint8
    np.testing.assert_array_equal(packed['inputs'].numpy(), img.transpose(2, 0, 1))
    sample = packed['data_samples']
    assert sample.gt_label.tolist() == [7]
    assert (sample.img_path, sample.sample_idx, sample.ori_shape) == ('a.JPEG', 2, (4, 5))
