"""What a Runner's log adds to mmengine's environment record: the facts results and speed
depend on that mmengine does not log.

mmengine's record (``mmengine.utils.dl_utils.collect_env``) names the platform, Python,
CUDA, GCC, torch and its build, torchvision, OpenCV and mmengine. Here: the CPU's model
name (bf16 speed and the speed of torch's fp32 GEMMs depend on it), the GPUs, and the
versions of the other installed distributions mmclip's results depend on, read from
their metadata (nothing is imported).
"""
from importlib import metadata
from typing import Dict

import torch

from .cpu import cpu_model_name

# Distributions whose versions decide results or speed, in the order they are logged.
DISTRIBUTIONS = ('mmclip', 'mmcv-lite', 'mmcv', 'timm', 'open_clip_torch', 'onnxruntime',
                 'onnxruntime-gpu', 'openvino', 'numpy', 'pillow', 'safetensors')


def collect_env() -> Dict[str, object]:
    """The CPU, the GPUs and the versions of the installed ``DISTRIBUTIONS`` (those not
    installed are left out)."""
    env: Dict[str, object] = {'CPU': cpu_model_name()}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            env[f'GPU {index}'] = torch.cuda.get_device_name(index)
    for name in DISTRIBUTIONS:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return env
