"""ONNX export and the ONNX Runtime backend (the ``onnx`` extra: onnx, onnxruntime, onnxscript).

Importing this package needs neither; they are imported when first used, and a missing one
raises ``MissingExtraError`` with the pip command that installs it.
"""
from .onnx_export import UINT8_RGB_INPUT, NormalizedClassifier, export_onnx, verify_onnx
from .onnxruntime_classifier import (
                                     MissingExtraError,
                                     OnnxRuntimeClassifier,
                                     build_onnxruntime_classifier,
                                     onnx_metadata,
                                     require,
)

__all__ = [
    'UINT8_RGB_INPUT', 'NormalizedClassifier', 'export_onnx', 'verify_onnx', 'MissingExtraError',
    'OnnxRuntimeClassifier', 'build_onnxruntime_classifier', 'onnx_metadata', 'require'
]
