"""The environment a Runner writes to its log, without importing what the run does not use.

mmengine's ``collect_env`` imports torchvision only to print its version, and
``torchvision.ops`` pulls in ``torch._dynamo``: 1.6 s of every ``tools/test.py`` start on a
2-core CPU. Here versions come from the installed distributions' metadata, and the CPU's
model name is added (bf16 speed and the speed of torch's fp32 GEMMs depend on it).
"""
import sys
from importlib import metadata
from typing import Dict

import torch

from .cpu import cpu_model_name

# Distributions whose versions decide results or speed, in the order they are logged.
DISTRIBUTIONS = ('torchvision', 'mmengine', 'mmcv', 'mmcv-lite', 'mmclip', 'timm',
                 'open_clip_torch', 'onnxruntime', 'onnxruntime-gpu', 'numpy', 'pillow',
                 'opencv-python', 'opencv-python-headless', 'safetensors')


def collect_env() -> Dict[str, object]:
    """Platform, Python, CPU, GPUs, torch's version and build configuration, and the
    versions of the installed ``DISTRIBUTIONS`` (those not installed are left out)."""
    env: Dict[str, object] = {
        'sys.platform': sys.platform,
        'Python': sys.version.replace('\n', ''),
        'CPU': cpu_model_name(),
        'CUDA available': torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            env[f'GPU {index}'] = torch.cuda.get_device_name(index)
        env['CUDA runtime'] = torch.version.cuda
    env['PyTorch'] = torch.__version__  # with its build tag (+cu130), which metadata drops
    env['PyTorch compiling details'] = torch.__config__.show()
    for name in DISTRIBUTIONS:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return env
