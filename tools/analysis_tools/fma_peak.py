"""This CPU's measured multiply-add peak, and how close a measured speed comes to it.

A ratio to timm changes from one CPU to the next; the distance to the CPU's own limit does
not. ``benchmark.py`` reports, per run, the share of the peak that its images/s reach:
``images/s x multiply-adds per image / peak multiply-adds per second``. The peak is
measured here by compiling ``fma_peak.c`` (``cc -O2 -march=native -fopenmp``) and running
it with the benchmark's thread count; without a C compiler, or for bf16 on a CPU without
AVX512-BF16, the reason is returned instead of a number.
"""
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

SOURCE = Path(__file__).with_name('fma_peak.c')
_RATE = {'wall': re.compile(r'thread\(s\): ([\d.]+) G (?:fp32|bf16) multiply-adds/s'),
         'cpu': re.compile(r'cpu time: ([\d.]+) G (?:fp32|bf16) multiply-adds/s')}


@lru_cache(maxsize=None)
def _binary() -> Union[Path, str]:
    """The compiled probe, or why there is none."""
    compiler = shutil.which(os.environ.get('CC', 'cc')) or shutil.which('gcc')
    if compiler is None:
        return 'no C compiler (cc / gcc) to build tools/analysis_tools/fma_peak.c'
    binary = Path(tempfile.mkdtemp(prefix='mmclip-fma-')) / 'fma_peak'
    build = subprocess.run([compiler, '-O2', '-march=native', '-fopenmp', str(SOURCE), '-o',
                            str(binary)], capture_output=True, text=True)
    if build.returncode != 0:
        return f'{compiler} could not build fma_peak.c: {build.stderr.strip()[:200]}'
    return binary


@lru_cache(maxsize=None)
def measure(threads: int, precision: str, timer: str = 'wall',
            iters: int = 20_000_000) -> Tuple[Optional[float], str]:
    """(multiply-adds per second on ``threads`` threads, '') or (None, the reason).
    ``precision``: 'fp32', or 'bf16' (AVX512-BF16 dot products); fp16 has no CPU peak.
    ``timer``: per wall-clock second, or per CPU-second of each thread ('cpu', as
    ``benchmark.py --timer cpu`` times: load from other processes does not lower it)."""
    if precision not in ('fp32', 'bf16'):
        return None, f'no CPU multiply-add peak for {precision}'
    binary = _binary()
    if isinstance(binary, str):
        return None, binary
    probe = subprocess.run([str(binary), str(iters), precision], capture_output=True,
                           text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    found = _RATE[timer].search(probe.stdout)
    if probe.returncode != 0 or found is None:
        return None, probe.stdout.strip() or probe.stderr.strip()
    return float(found.group(1)) * 1e9, ''


def _attention_multiply_adds(inputs: list, outputs: list) -> int:
    """``F.scaled_dot_product_attention(q, k, v)``: q @ k^T and the weights @ v, for q
    [..., Nq, D], k [..., Nk, D], v [..., Nk, Dv] (mmengine's counter has no handle for it)."""
    from math import prod

    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    return prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def multiply_adds(model: torch.nn.Module, size: int) -> int:
    """Multiply-adds of one ``size`` x ``size`` image through ``model`` as it runs
    (mmengine's counter: one multiply-add is one FLOP; attention's two matrix products
    included), e.g. with mmclip's class-token pooling the last block's work for the class
    token alone."""
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.zeros(1, 3, size, size)).set_op_handle(
            'aten::scaled_dot_product_attention', _attention_multiply_adds)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analyzer.total())


def percent_of_peak(images_per_s: float, macs_per_image: int, peak: float) -> float:
    return 100.0 * images_per_s * macs_per_image / peak
