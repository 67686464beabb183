"""An exported ``.onnx`` classifier run by OpenVINO on the CPU, with the torch model's
interface (``ExportedClassifier``).

OpenVINO reads the same ``.onnx`` as ONNX Runtime (no conversion step). Its CPU plugin
picks bf16 by itself on CPUs with AMX / AVX512-BF16, which moves logits by ~1e-2; fp32 is
therefore asked for explicitly and bf16 is an opt-in (``precision='bf16'``).
"""
import os
from pathlib import Path
from typing import Optional, Union

import torch

from mmclip.registry import MODELS
from mmclip.utils.cpu import usable_cores
from mmclip.utils.signal_stack import signal_stack_kept

from .exported_classifier import ExportedClassifier, build_with_config, require
from .onnx_check import check_onnx_file

# mmclip precision -> OpenVINO's INFERENCE_PRECISION_HINT
_PRECISION_HINTS = {'fp32': 'f32', 'bf16': 'bf16'}


def _compile(onnx_file: Union[str, Path], device: str, threads: Optional[int],
             precision: str):
    if torch.device(device).type != 'cpu':
        raise ValueError(f"device={device!r}: the OpenVINO backend runs on the CPU; use "
                         f"device='cpu' (or backend='onnxruntime' on CUDA).")
    import openvino as ov
    config = {'INFERENCE_NUM_THREADS': threads or usable_cores(),
              'INFERENCE_PRECISION_HINT': _PRECISION_HINTS[precision],
              'PERFORMANCE_HINT': 'LATENCY'}  # one stream: a batch uses all the threads
    with signal_stack_kept():  # the CPU plugin would leave this thread on a stack it frees
        return ov.Core().compile_model(os.fspath(onnx_file), 'CPU', config)


def compile_openvino(onnx_file: Union[str, Path], device: str = 'cpu',
                     threads: Optional[int] = None, precision: str = 'fp32'):
    """An OpenVINO ``CompiledModel`` of ``onnx_file`` on the CPU: ``threads`` inference
    threads (default: the usable cores) in one stream, ``precision`` 'fp32' (exact) or
    'bf16'. The file is checked first (``check_onnx_file``): OpenVINO would follow its
    external data."""
    require('openvino', 'onnx', extra='openvino')
    if precision not in _PRECISION_HINTS:
        raise ValueError(f'OpenVINO runs an .onnx in fp32 or bf16; got precision='
                         f'{precision!r}.')
    check_onnx_file(onnx_file)
    return _compile(onnx_file, device, threads, precision)


@MODELS.register_module()
class OpenVinoClassifier(ExportedClassifier):
    """An ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` run by OpenVINO (CPU).

    Config keys:
        onnx_file: the exported model (input ``images``: uint8 RGB [B, 3, H, W]).
        device: 'cpu'.
        threads: OpenVINO inference threads (default: the usable cores).
        precision: 'fp32' (default, as exported) or 'bf16' (OpenVINO's
            INFERENCE_PRECISION_HINT; faster on CPUs with AMX / AVX512-BF16).
    """
    NAME = 'OpenVINO'
    REQUIRES = ('openvino', 'onnx')
    EXTRA = 'openvino'
    PRECISIONS = tuple(_PRECISION_HINTS)

    def __init__(self, onnx_file: str, device: str = 'cpu', threads: Optional[int] = None,
                 precision: str = 'fp32', init_cfg: Optional[dict] = None) -> None:
        super().__init__(onnx_file, precision, init_cfg)  # checks the file
        self.compiled = _compile(onnx_file, device, threads, precision)
        self.request = self.compiled.create_infer_request()

    def run_graph(self, images):
        # The request reuses its output buffer: copy before the next batch overwrites it.
        return self.request.infer({0: images})[0].copy()


def build_openvino_classifier(config, onnx_file: Union[str, os.PathLike],
                              device: str = 'cpu', threads: Optional[int] = None,
                              precision: str = 'fp32') -> OpenVinoClassifier:
    """``onnx_file`` run by OpenVINO, with ``model.cfg`` from ``config``, as
    ``build_onnxruntime_classifier`` returns an ONNX Runtime one."""
    return build_with_config(OpenVinoClassifier, config, onnx_file, device=device,
                             threads=threads, precision=precision)
