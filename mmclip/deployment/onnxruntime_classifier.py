"""An exported ``.onnx`` classifier run by ONNX Runtime, with the torch model's interface
(``ExportedClassifier``)."""
import os
from pathlib import Path
from typing import Optional, Union

import torch

from mmclip.registry import MODELS
from mmclip.utils.cpu import usable_cores

from .exported_classifier import (
                                  ExportedClassifier,
                                  MissingExtraError,
                                  build_with_config,
                                  require,
)
from .onnx_check import check_onnx_file, parse_metadata

__all__ = ['MissingExtraError', 'require', 'create_session', 'onnx_metadata',
           'OnnxRuntimeClassifier', 'build_onnxruntime_classifier']


def _new_session(onnx_file: Union[str, Path], device: str, threads: Optional[int]):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ['CPUExecutionProvider']
    if torch.device(device).type == 'cuda':
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise ValueError(f"device={device!r}: this onnxruntime has no CUDA provider "
                             f"(install onnxruntime-gpu) ; use device='cpu'.")
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(str(onnx_file), sess_options=options, providers=providers)


def create_session(onnx_file: Union[str, Path], device: str = 'cpu',
                   threads: Optional[int] = None):
    """An ``InferenceSession`` with intra-op threads set explicitly (default: the usable
    cores) and one inter-op thread; CUDA provider first for ``device='cuda'``. The file is
    checked first (``check_onnx_file``): ONNX Runtime would follow its external data."""
    require('onnxruntime', 'onnx')
    check_onnx_file(onnx_file)
    return _new_session(onnx_file, device, threads)


def onnx_metadata(session, source: str = 'the ONNX model') -> dict:
    """The ``mmclip.*`` metadata the exporter wrote (class names, image size), checked as
    ``check_onnx_file`` checks it."""
    props = session.get_modelmeta().custom_metadata_map
    shape = session.get_outputs()[0].shape
    return parse_metadata(props, shape[-1] if shape else None, source)._asdict()


@MODELS.register_module()
class OnnxRuntimeClassifier(ExportedClassifier):
    """An ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` run by ONNX Runtime.

    Config keys:
        onnx_file: the exported model (input ``images``: uint8 RGB [B, 3, H, W]).
        device: 'cpu' or 'cuda' (ONNX Runtime's CUDA provider).
        threads: ONNX Runtime intra-op threads (default: the usable cores).
        precision: 'fp32' only: the graph runs as exported.
    """
    NAME = 'ONNX Runtime'
    REQUIRES = ('onnxruntime', 'onnx')

    def __init__(self, onnx_file: str, device: str = 'cpu', threads: Optional[int] = None,
                 precision: str = 'fp32', init_cfg: Optional[dict] = None) -> None:
        super().__init__(onnx_file, precision, init_cfg)  # checks the file
        self.session = _new_session(onnx_file, device, threads)
        self.input_name = self.session.get_inputs()[0].name

    def run_graph(self, images):
        (logits, ) = self.session.run(None, {self.input_name: images})
        return logits


def build_onnxruntime_classifier(config, onnx_file: Union[str, os.PathLike],
                                 device: str = 'cpu',
                                 threads: Optional[int] = None) -> OnnxRuntimeClassifier:
    """``onnx_file`` run by ONNX Runtime, with ``model.cfg`` (the test pipeline's source)
    from ``config`` (a zoo name, a config path or a ``Config``) and the class names the
    exporter stored, as ``get_model`` returns a torch model."""
    return build_with_config(OnnxRuntimeClassifier, config, onnx_file, device=device,
                             threads=threads)
