"""inference_model and ImageClassificationInferencer on the real photos (tiny random model).

Expected scores come from an independent preprocessing (PIL + torchvision transforms, as
timm evaluates) fed to the same model.
"""
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from mmclip import ImageClassificationInferencer, get_model, inference_model
from mmclip.apis import imagenet_categories
from mmclip.apis import inference as inference_module

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture
def photos(images_dir):
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in ('.jpg', '.png'))
    modes = set()
    for path in paths:
        with Image.open(path) as img:
            modes.add(img.mode)
    assert len(paths) >= 10 and {'RGB', 'L', 'RGBA'} <= modes
    return paths


@pytest.fixture
def checkpoint(tiny_config, tmp_path):
    """A tiny config and a checkpoint of random weights that tell the photos apart:
    std 0.2 outside the LayerNorms, a unit-variance head without bias."""
    config = tiny_config(img_size=64, patch_size=16)
    model = get_model(str(config))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'ln' not in name and 'norm' not in name:
                p.normal_(std=0.2)
        model.head.layers.head.weight.normal_()
        model.head.layers.head.bias.zero_()
    torch.save(model.state_dict(), tmp_path / 'tiny.pth')
    return str(config), str(tmp_path / 'tiny.pth')


def expected_scores(model, path) -> np.ndarray:
    """timm-style eval preprocessing done with torchvision, then the model's forward."""
    transform = T.Compose([T.Resize(64, interpolation=T.InterpolationMode.BICUBIC),
                           T.CenterCrop(64), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    with Image.open(path) as img:
        x = transform(img.convert('RGB'))[None]
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[0].numpy()


def test_every_photo_gives_the_four_keys_and_the_right_scores(checkpoint, photos):
    config, weights = checkpoint
    inferencer = ImageClassificationInferencer(config, pretrained=weights, device='cpu')
    results = inferencer(photos, batch_size=4)
    assert len(results) == len(photos)
    for path, result in zip(photos, results):
        assert set(result) == {'pred_label', 'pred_score', 'pred_class', 'pred_scores'}
        scores = result['pred_scores']
        assert scores.shape == (1000,) and scores.dtype == np.float32
        assert result['pred_score'] == scores.max()
        assert result['pred_label'] == int(scores.argmax())
        assert result['pred_class'] == imagenet_categories()[result['pred_label']]
        np.testing.assert_allclose(scores, expected_scores(inferencer.model, path),
                                   rtol=0, atol=1e-5, err_msg=path.name)
    assert len({r['pred_label'] for r in results}) > 1  # not a constant prediction


def test_list_is_in_order_and_batching_changes_nothing(checkpoint, photos):
    config, weights = checkpoint
    inferencer = ImageClassificationInferencer(config, pretrained=weights, device='cpu')
    one_by_one = [inferencer(p)[0] for p in photos[:5]]
    batched = inferencer(list(reversed(photos[:5])), batch_size=3)[::-1]
    for a, b in zip(one_by_one, batched):
        assert a['pred_label'] == b['pred_label']
        # The class-token-only last layer runs [B, C] GEMMs, whose kernels round a little
        # differently for B = 1 and B = 3.
        np.testing.assert_allclose(a['pred_scores'], b['pred_scores'], rtol=0, atol=1e-5)


def test_path_bgr_array_rgb_array_and_pil_agree(checkpoint, photos):
    config, weights = checkpoint
    inferencer = ImageClassificationInferencer(config, pretrained=weights, device='cpu')
    for path in photos:
        with Image.open(path) as img:
            img.load()
            pil = img
        rgb = np.asarray(pil.convert('RGB'))
        # One image per call: identical input tensors then give bit-identical scores.
        results = [inferencer(x)[0] for x in (path, str(path), rgb[..., ::-1].copy(), pil)]
        results.append(inferencer(rgb, channel_order='rgb')[0])
        if pil.mode == 'L':
            results.append(inferencer(np.asarray(pil))[0])  # [H, W] gray array
        reference = results[0]['pred_scores']
        for result in results[1:]:
            np.testing.assert_array_equal(result['pred_scores'], reference, err_msg=path.name)


def test_sixteen_bit_path_and_pil_agree(checkpoint, photos, tmp_path):
    config, weights = checkpoint
    inferencer = ImageClassificationInferencer(config, pretrained=weights, device='cpu')
    with Image.open(next(p for p in photos if p.name == 'camera.png')) as gray:
        wide = np.asarray(gray, dtype=np.uint16) * 257  # full 16-bit range
    path = tmp_path / 'camera16.png'
    Image.fromarray(wide).save(path)
    with Image.open(path) as img:
        img.load()
        assert img.mode.startswith('I')
        from_pil = inferencer(img)[0]['pred_scores']
    from_path = inferencer(path)[0]['pred_scores']
    from_8bit = inferencer(np.asarray(Image.fromarray((wide // 257).astype(np.uint8))))[0]
    np.testing.assert_array_equal(from_pil, from_path)
    np.testing.assert_array_equal(from_path, from_8bit['pred_scores'])


def test_inferencer_builds_the_model_once(checkpoint, photos, monkeypatch):
    config, weights = checkpoint
    calls = []

    def counting_get_model(*args, **kwargs):
        calls.append(args)
        return get_model(*args, **kwargs)

    monkeypatch.setattr(inference_module, 'get_model', counting_get_model)
    monkeypatch.setattr(inference_module, '_LAST_INFERENCER', {})
    inferencer = ImageClassificationInferencer(config, pretrained=weights, device='cpu')
    inferencer(photos[0])
    inferencer(photos[:2])
    assert len(calls) == 1

    first = inference_model(config, photos[0], pretrained=weights, device='cpu')
    second = inference_model(config, [photos[0], photos[1]], pretrained=weights, device='cpu')
    assert len(calls) == 2  # inference_model reused its inferencer
    assert isinstance(first, dict) and isinstance(second, list) and len(second) == 2
    np.testing.assert_array_equal(first['pred_scores'], second[0]['pred_scores'])


def test_built_model_and_bf16(checkpoint, photos):
    config, weights = checkpoint
    model = get_model(config, pretrained=weights)
    fp32 = inference_model(model, photos[:3], device='cpu')
    bf16 = inference_model(model, photos[:3], device='cpu', precision='bf16')
    for a, b in zip(fp32, bf16):
        # bf16 keeps 8 mantissa bits: scores move a little, their sum stays 1.
        assert abs(b['pred_scores'].sum() - 1) < 1e-4
        assert np.abs(a['pred_scores'] - b['pred_scores']).max() < 0.05


def test_bad_inputs_are_clear(checkpoint, photos, tmp_path):
    config, weights = checkpoint
    inferencer = ImageClassificationInferencer(config, pretrained=weights, device='cpu')
    with pytest.raises(ValueError, match=r'Input 1: expected a uint8 array'):
        inferencer([photos[0], np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="channel_order must be one of \\('bgr', 'rgb'\\)"):
        inferencer(photos[0], channel_order='RGB')
    with pytest.raises(TypeError, match='Input 0: expected a path'):
        inferencer(42)
    with pytest.raises(OSError, match='missing.jpg'):
        inferencer(tmp_path / 'missing.jpg')
    with pytest.raises(ValueError, match='precision must be one of'):
        ImageClassificationInferencer(config, pretrained=weights, device='cpu', precision='fp8')
    with pytest.raises(ValueError, match='get_model'):
        ImageClassificationInferencer(torch.nn.Linear(1, 1), device='cpu')


def test_image_demo_prints_the_ranked_top_k(checkpoint, capsys):
    config, weights = checkpoint
    demo = Path(__file__).resolve().parents[1] / 'demo'
    image = demo / 'cat.jpg'
    saved = sys.argv
    sys.argv = ['image_demo.py', str(image), config, '--pretrained', weights,
                '--device', 'cpu', '--topk', '3']
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(demo / 'image_demo.py'), run_name='__main__')
    finally:
        sys.argv = saved
    assert exit_info.value.code == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if re.match(r'\s+\d+\s', line)]
    scores = inference_model(config, str(image), pretrained=weights, device='cpu')['pred_scores']
    top3 = np.argsort(-scores)[:3]
    assert [int(row[0]) for row in rows] == [1, 2, 3]
    assert [int(row[-2]) for row in rows] == top3.tolist()
    assert [' '.join(row[1:-2]) for row in rows] == [imagenet_categories()[i] for i in top3]
    assert [float(row[-1]) for row in rows] == [round(float(scores[i]), 4) for i in top3]


def test_image_demo_batches_images_and_exits_cleanly_offline(checkpoint, capsys, monkeypatch,
                                                             torch_home):
    config, weights = checkpoint
    demo = Path(__file__).resolve().parents[1] / 'demo'
    images = [str(demo / 'cat.jpg'), str(demo / 'rocket.jpg')]

    def run_demo(*args) -> int:
        monkeypatch.setattr(sys, 'argv', ['image_demo.py', *args])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(demo / 'image_demo.py'), run_name='__main__')
        return exit_info.value.code

    assert run_demo(*images, config, '--pretrained', weights, '--device', 'cpu', '--topk', '1',
                    '--batch-size', '2') == 0
    out, err = capsys.readouterr()
    assert 'on cpu, precision fp32, batch 2' in err
    for image in images:
        label = inference_model(config, image, pretrained=weights, device='cpu')['pred_label']
        block = out.split(f'{image}:\n', 1)[1].splitlines()
        assert int(block[1].split()[-2]) == label

    dead = 'http://127.0.0.1:1/clip-vit-test-deadbeef.pth'  # nothing listens on port 1
    assert run_demo(images[0], config, '--pretrained', dead, '--device', 'cpu') == 1
    # The last line: loggers of earlier tests in this process may write to stderr too.
    message = capsys.readouterr().err.splitlines()[-1]
    assert message.startswith('ERROR: ') and dead in message
    assert str(torch_home / 'hub' / 'checkpoints' / 'clip-vit-test-deadbeef.pth') in message


def _checkpoint_with(config: str, path: Path, classes=None, head_value=None) -> str:
    """The tiny model's weights in ``path``, with ``classes`` as the checkpoint's class
    names and the head's weights set to ``head_value``."""
    model = get_model(config)
    if head_value is not None:
        with torch.no_grad():
            model.head.layers.head.weight.fill_(head_value)
    meta = dict(dataset_meta=dict(classes=classes)) if classes is not None else {}
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return str(path)


@pytest.mark.parametrize('classes,message', [
    ('cat', 'the class names must be a list of strings, one per class (1000); got a str.'),
    (['cat', 'dog'], '2 class names for a model with 1000 classes.'),
    (['cat'] * 999 + [7], 'the class names must be a list of strings, one per class (1000); '
                          'got a list holding 1 int.'),
])
def test_class_names_from_a_checkpoint_are_checked(checkpoint, tmp_path, classes, message):
    config, _ = checkpoint
    path = _checkpoint_with(config, tmp_path / 'named.pth', classes)
    with pytest.raises(ValueError) as info:
        get_model(config, pretrained=path)
    assert str(info.value) == f'{path}: {message}'
    names = [f'class {i}' for i in range(1000)]
    model = get_model(config, pretrained=_checkpoint_with(config, tmp_path / 'ok.pth', names))
    assert model.dataset_meta['classes'] == tuple(names)  # the check passes good names


def test_class_names_name_the_outputs_and_classes_are_for_zero_shot_models(checkpoint, photos,
                                                                           tmp_path):
    """``class_names=`` names a model's outputs; ``classes=`` (what a zero-shot model
    classifies into) is refused for a vision-only model, pointing to ``class_names=``."""
    config, path = checkpoint
    names = [f'name {i}' for i in range(1000)]
    named = ImageClassificationInferencer(config, pretrained=path, device='cpu',
                                          class_names=names)(photos[0])[0]
    plain = ImageClassificationInferencer(config, pretrained=path, device='cpu')(photos[0])[0]
    assert named['pred_label'] == plain['pred_label']
    assert named['pred_class'] == names[plain['pred_label']] != plain['pred_class']
    np.testing.assert_array_equal(named['pred_scores'], plain['pred_scores'])
    assert inference_model(config, photos[0], pretrained=path, device='cpu',
                           class_names=names)['pred_class'] == named['pred_class']
    with pytest.raises(ValueError, match=r'class_names= has 2 names for a model with 1000 '):
        ImageClassificationInferencer(config, pretrained=path, class_names=['a', 'b'])
    with pytest.raises(ValueError, match='classes= chooses what a zero-shot model .* To name '
                                         'its outputs, pass class_names='):
        ImageClassificationInferencer(config, pretrained=path, classes=names)


def test_finite_but_huge_weights_are_refused_naming_the_checkpoint(checkpoint, photos,
                                                                    tmp_path):
    config, _ = checkpoint
    path = _checkpoint_with(config, tmp_path / 'huge.pth', head_value=3e38)
    assert torch.isfinite(torch.load(path)['state_dict']['head.layers.head.weight']).all()
    inferencer = ImageClassificationInferencer(config, pretrained=path, device='cpu')
    with pytest.raises(inference_module.NonFiniteOutputError) as info:
        inferencer(photos[0])
    assert str(info.value).startswith(f'{path}: the model outputs NaN or Inf for an image')
    assert '\n' not in str(info.value)
