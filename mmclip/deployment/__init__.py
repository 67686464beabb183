"""ONNX export and the runtimes of an exported model: ONNX Runtime (the ``onnx`` extra:
onnx, onnxruntime, onnxscript) and OpenVINO (the ``openvino`` extra).

Importing this package needs none of them; they are imported when first used, and a
missing one raises ``MissingExtraError`` with the pip command that installs it. Every
``.onnx`` is checked (``check_onnx_file``) before a runtime opens it.
"""
from .backends import EXPORTED_BACKENDS, build_exported_classifier
from .exported_classifier import ExportedClassifier, MissingExtraError, require
from .onnx_check import OnnxMetadataError, UnsafeOnnxError, check_onnx_file
from .onnx_export import UINT8_RGB_INPUT, NormalizedClassifier, export_onnx, verify_onnx
from .onnxruntime_classifier import (
                                     OnnxRuntimeClassifier,
                                     build_onnxruntime_classifier,
                                     onnx_metadata,
)
from .openvino_classifier import OpenVinoClassifier, build_openvino_classifier, compile_openvino

__all__ = [
    'UINT8_RGB_INPUT', 'NormalizedClassifier', 'export_onnx', 'verify_onnx', 'MissingExtraError',
    'OnnxRuntimeClassifier', 'build_onnxruntime_classifier', 'onnx_metadata', 'require',
    'check_onnx_file', 'UnsafeOnnxError', 'OnnxMetadataError', 'ExportedClassifier',
    'OpenVinoClassifier', 'build_openvino_classifier', 'compile_openvino', 'EXPORTED_BACKENDS',
    'build_exported_classifier'
]
