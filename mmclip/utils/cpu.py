"""What this process's CPU is, and how many of its cores it may use.

One place for both, because the tools size DataLoader workers and ONNX Runtime threads from
the cores, and the environment log and the bf16 warning read ``/proc/cpuinfo``.
"""
import os
import platform
from functools import lru_cache
from typing import Optional


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """DataLoader workers that leave one core to the main process, which runs the model;
    at most 8."""
    return max(1, min(8, usable_cores() - 1))


@lru_cache(maxsize=1)
def _cpuinfo() -> Optional[str]:
    """``/proc/cpuinfo``, or None where there is none (not Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            return f.read()
    except OSError:
        return None


def cpu_model_name() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    for line in (_cpuinfo() or '').splitlines():
        if line.startswith('model name'):
            return line.partition(':')[2].strip()
    return platform.processor() or 'unknown'


def cpu_has_native_bf16() -> Optional[bool]:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX), from /proc/cpuinfo;
    None where that cannot be read (not Linux)."""
    info = _cpuinfo()
    if info is None:
        return None
    return bool(set(info.split()) & {'avx512_bf16', 'amx_bf16', 'bf16'})
