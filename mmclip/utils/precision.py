"""Mixed-precision and ``torch.compile`` switches shared by inference, evaluation and benchmarks.

One place decides what each ``precision`` string means so that ``inference_model``, the
Inferencer, ``tools/test.py`` and ``tools/analysis_tools/benchmark.py`` agree:

- ``'fp32'``: no autocast.
- ``'bf16'``: ``torch.autocast`` with ``bfloat16`` on CPU or CUDA. On CPUs with AVX-512 BF16 /
  AMX this is where most of the speed-up comes from; LayerNorm and softmax stay in fp32 under
  autocast, so logits stay close to fp32.
- ``'fp16'``: ``torch.autocast`` with ``float16``, CUDA only (CPU fp16 matmuls are slow and
  not what a user asking for speed wants).

``--amp`` in every tool means ``amp_precision(device)``: bf16 on the CPU, fp16 on CUDA.
On a CPU without native bf16 instructions torch emulates them, and bf16 is slower than
fp32 (3.6x slower for ViT-B/32 on a 2-core Xeon without AVX512-BF16): ``check_precision``
logs a warning saying so.
"""
import logging
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .cpu import cpu_has_native_bf16

PRECISIONS = ('fp32', 'bf16', 'fp16')

_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def _device_type(device: Union[str, torch.device]) -> str:
    """'cuda:1' / torch.device('cuda', 1) -> 'cuda'."""
    return torch.device(device).type


def amp_precision(device: Union[str, torch.device]) -> str:
    """What ``--amp`` means on ``device``: 'fp16' on CUDA, else 'bf16'."""
    return 'fp16' if _device_type(device) == 'cuda' else 'bf16'


def check_device(device: Union[str, torch.device]) -> None:
    """Raise ``ValueError`` for a CUDA device torch cannot use here: moving a model there
    would end in a 40-line traceback from torch's lazy CUDA initialisation."""
    if _device_type(device) == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {str(device)!r}: torch finds no CUDA GPU here (no GPU, no '
                         f'driver, or a CPU-only torch build); use the CPU (--device cpu).')


def check_precision(precision: str, device: Union[str, torch.device] = 'cpu') -> None:
    """Raise ``ValueError`` if ``precision`` is unknown or unsupported on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(
            f'precision must be one of {PRECISIONS}, got {precision!r}')
    device_type = _device_type(device)
    if precision == 'fp16' and device_type != 'cuda':
        raise ValueError(
            f"precision='fp16' needs a CUDA device, got device={str(device)!r}; "
            "use precision='bf16' on CPU")
    if precision != 'fp32' and device_type not in ('cpu', 'cuda'):
        raise ValueError(
            f'precision={precision!r} is supported on cpu and cuda devices, '
            f'got device={str(device)!r}; use precision=\'fp32\'')
    if precision == 'bf16' and device_type == 'cpu' and cpu_has_native_bf16() is False:
        _warn_emulated_bf16()


@lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    print_log('This CPU has no bf16 instructions (AVX512-BF16 / AMX): torch emulates them '
              'and bf16 autocast (--amp, --precision bf16) runs slower than fp32 here. '
              'Leave --amp off on this machine.', logger='current', level=logging.WARNING)


def autocast_context(device: Union[str, torch.device],
                     precision: str) -> AbstractContextManager:
    """Return the context manager that runs a forward pass at ``precision``.

    Args:
        device: Device the model runs on, e.g. ``'cpu'``, ``'cuda:0'``.
        precision: One of ``'fp32'``, ``'bf16'``, ``'fp16'`` (CUDA only).

    Returns:
        ``nullcontext()`` for fp32, else ``torch.autocast(device_type, dtype)``.

    Raises:
        ValueError: unknown precision, or fp16 requested on a non-CUDA device.
    """
    check_precision(precision, device)
    if precision == 'fp32':
        return nullcontext()
    return torch.autocast(
        device_type=_device_type(device), dtype=_AUTOCAST_DTYPES[precision])


def maybe_compile(model: nn.Module, compile: bool, **compile_kwargs) -> nn.Module:
    """Compile ``model`` with ``torch.compile`` in place when ``compile`` is True.

    In place (``nn.Module.compile``) rather than ``torch.compile(model)``: the returned
    object is ``model`` itself, so state-dict keys get no ``_orig_mod.`` prefix (checkpoints
    still load) and methods that call ``self(...)`` internally, such as mmengine's
    ``test_step``, run the compiled code. For a classifier with a ``backbone`` only the
    backbone is compiled: it holds all the tensor work, while the head's ``predict`` builds
    ``DataSample`` objects that would break or re-trigger the graph on every batch.

    The first call per input shape and autocast state compiles (seconds to minutes);
    later calls are fast. On CPU the inductor backend needs a C++ compiler.

    Args:
        model: any module; an mmclip ``ImageClassifier`` has its ``backbone`` compiled.
        compile: whether to compile.
        **compile_kwargs: passed to ``torch.compile`` (e.g. ``mode='max-autotune'``).

    Returns:
        ``model``.
    """
    if not isinstance(compile, bool):
        raise ValueError(f'compile must be True or False, got {compile!r}')
    if compile:
        target = model.backbone if isinstance(getattr(model, 'backbone', None),
                                              nn.Module) else model
        target.compile(**compile_kwargs)
    return model
