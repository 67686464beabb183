"""The runtimes an exported ``.onnx`` runs in, by the name the tools and the inferencer
take (``backend='onnxruntime'`` / ``'openvino'``)."""
import os
from typing import Dict, Optional, Union

from .exported_classifier import ExportedClassifier, build_with_config
from .onnxruntime_classifier import OnnxRuntimeClassifier
from .openvino_classifier import OpenVinoClassifier

EXPORTED_BACKENDS: Dict[str, type] = {'onnxruntime': OnnxRuntimeClassifier,
                                      'openvino': OpenVinoClassifier}


def build_exported_classifier(backend: str, config, onnx_file: Union[str, os.PathLike],
                              device: str = 'cpu', threads: Optional[int] = None,
                              precision: str = 'fp32') -> ExportedClassifier:
    """``onnx_file`` run by ``backend`` (a key of ``EXPORTED_BACKENDS``), with
    ``model.cfg`` from ``config``, as ``get_model`` returns a torch model."""
    return build_with_config(EXPORTED_BACKENDS[backend], config, onnx_file, device=device,
                             threads=threads, precision=precision)
