"""Precision and compile options give the fp32 answers (tiny random-weight CLIP ViT).

bf16 autocast: logits within 5e-2 (max abs) of fp32 and the same top-1 on the real
photos; torch.compile: within 1e-4 of eager, with the state-dict keys and mmengine's
``test_step`` unchanged. No timings here: speed lives in tools/analysis_tools/benchmark.py.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmclip.models  # noqa: F401  (registers the model types)
from mmclip.registry import MODELS
from mmclip.utils import PRECISIONS, autocast_context, maybe_compile

IMAGES = Path(__file__).resolve().parent / 'data' / 'images'
SIZE = 64
BF16_TOL = 5e-2
COMPILE_TOL = 1e-4
TINY = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128),
        img_size=SIZE,
        patch_size=16,
        pre_norm=True),
    head=dict(type='VisionTransformerClsHead', num_classes=10, in_channels=64),
    data_preprocessor=dict(
        mean=[122.770938, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305],
        to_rgb=True))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    # PyTorch's default Linear init (no init_weights) spreads the logits enough that
    # top-1 is not decided by rounding.
    torch.manual_seed(seed)
    return MODELS.build(TINY).eval()


def photo_batch() -> list:
    """Every photo of tests/data/images as a uint8 BGR [3, SIZE, SIZE] tensor."""
    paths = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in ('.jpg', '.png'))
    assert len(paths) >= 10, f'expected the real photos in {IMAGES}'
    batch = []
    for path in paths:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert('RGB').resize((SIZE, SIZE), Image.BICUBIC))
        batch.append(torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1])).permute(2, 0, 1))
    return batch


def inductor_unavailable_reason():
    if not torch._dynamo.is_dynamo_supported():
        return 'torch._dynamo is not supported on this Python / platform'
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()
    except Exception as err:  # no C++ compiler: inductor cannot build CPU kernels
        return f'inductor needs a C++ compiler on CPU: {err}'
    return None


needs_inductor = pytest.mark.skipif(
    inductor_unavailable_reason() is not None, reason=str(inductor_unavailable_reason()))


# Seeds whose fp32 logits have no near-tie between the top two classes: bf16 rounding
# (about 1e-2 here) may legitimately flip a tie (seed 1 has a 1e-3 margin on one photo).
@pytest.mark.parametrize('seed', [0, 5])
def test_bf16_logits_and_top1_match_fp32(seed):
    model = tiny_model(seed)
    x = model.data_preprocessor(dict(inputs=photo_batch()))['inputs']
    with torch.inference_mode():
        with autocast_context('cpu', 'fp32'):
            fp32 = model(x)
        with autocast_context('cpu', 'bf16'):
            bf16 = model(x)
    # Autocast really ran in bf16 (else this test would compare fp32 with itself).
    assert bf16.dtype == torch.bfloat16
    error = (bf16.float() - fp32).abs().max().item()
    assert error <= BF16_TOL
    top2 = fp32.topk(2).values
    assert (top2[:, 0] - top2[:, 1]).min().item() > 2 * error, 'near-tie: pick another seed'
    assert torch.equal(bf16.argmax(1), fp32.argmax(1))


def test_bf16_predictions_through_test_step():
    model = tiny_model()
    data = dict(inputs=photo_batch())
    with torch.inference_mode():
        fp32 = model.test_step(data)
        with autocast_context(torch.device('cpu'), 'bf16'):
            bf16 = model.test_step(data)
    for a, b in zip(fp32, bf16):
        assert b.pred_score.dtype == torch.float32
        assert torch.equal(a.pred_label, b.pred_label)
        assert (a.pred_score - b.pred_score).abs().max().item() <= BF16_TOL


def test_fp32_context_changes_nothing():
    model = tiny_model()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        expected = model(x)
        with autocast_context('cpu', 'fp32'):
            assert torch.equal(model(x), expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 autocast needs CUDA')
@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_cuda_half_precisions_match_fp32(precision):
    model = tiny_model().cuda()
    x = model.data_preprocessor(dict(inputs=photo_batch()))['inputs']
    with torch.inference_mode():
        fp32 = model(x)
        with autocast_context('cuda:0', precision):
            half = model(x)
    assert half.dtype != torch.float32
    assert (half.float() - fp32).abs().max().item() <= BF16_TOL
    assert torch.equal(half.argmax(1), fp32.argmax(1))


@pytest.mark.parametrize('device,precision,match', [
    ('cpu', 'fp64', 'fp32'),
    ('cpu', 'amp', "'bf16'"),
    ('cpu', 'fp16', 'CUDA'),
    ('meta', 'bf16', 'cpu and cuda'),
])
def test_bad_precision_is_a_clear_error(device, precision, match):
    with pytest.raises(ValueError, match=match):
        autocast_context(device, precision)


def test_precision_choices():
    assert PRECISIONS == ('fp32', 'bf16', 'fp16')


def test_maybe_compile_off_returns_the_model_untouched():
    model = tiny_model()
    assert maybe_compile(model, False) is model
    assert model.backbone._compiled_call_impl is None
    with pytest.raises(ValueError, match='True or False'):
        maybe_compile(model, 'yes')


@needs_inductor
def test_compile_matches_eager_and_keeps_keys_and_test_step():
    eager = tiny_model()
    compiled = tiny_model()
    keys = list(compiled.state_dict())
    assert maybe_compile(compiled, True) is compiled
    assert compiled.backbone._compiled_call_impl is not None
    assert list(compiled.state_dict()) == keys  # no '_orig_mod.' prefix: checkpoints load

    data = dict(inputs=photo_batch())
    x = eager.data_preprocessor(data)['inputs']
    with torch.inference_mode():
        assert (compiled(x) - eager(x)).abs().max().item() <= COMPILE_TOL
        # test_step calls self(...) internally and goes through the compiled backbone.
        for a, b in zip(eager.test_step(data), compiled.test_step(data)):
            assert torch.equal(a.pred_label, b.pred_label)
            assert (a.pred_score - b.pred_score).abs().max().item() <= COMPILE_TOL


@needs_inductor
def test_compile_with_bf16_matches_fp32():
    eager = tiny_model()
    compiled = maybe_compile(tiny_model(), True)
    x = eager.data_preprocessor(dict(inputs=photo_batch()))['inputs']
    with torch.inference_mode():
        fp32 = eager(x)
        with autocast_context('cpu', 'bf16'):
            bf16 = compiled(x)
    assert bf16.dtype == torch.bfloat16
    assert (bf16.float() - fp32).abs().max().item() <= BF16_TOL
    assert torch.equal(bf16.argmax(1), fp32.argmax(1))


@pytest.mark.parametrize('native', [True, False, None])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(native, monkeypatch):
    from mmengine.logging import MMLogger

    from mmclip.utils import precision
    monkeypatch.setattr(precision, 'cpu_has_native_bf16', lambda: native)
    precision._warn_emulated_bf16.cache_clear()
    messages = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'warning', messages.append)
    monkeypatch.setattr(logger, 'log', lambda level, msg, *a, **k: messages.append(msg))
    precision.check_precision('bf16', 'cpu')
    precision.check_precision('fp32', 'cpu')
    warned = [m for m in messages if 'no bf16 instructions' in m]
    assert len(warned) == (1 if native is False else 0)
