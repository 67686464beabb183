"""Which runtime runs a model's weights: decided here once, for the inferencer,
``inference_model``, ``tools/test.py`` and ``tools/predict.py``.

An ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` runs in OpenVINO or ONNX Runtime;
anything else (a checkpoint, a URL, the zoo weights) in torch. By default an ``.onnx`` on
the CPU runs in OpenVINO where its extra is installed: it was the fastest exact path on
every CPU measured (docs/benchmarks.md, "Distance to the CPU's limit"); ONNX Runtime
otherwise, and on CUDA (OpenVINO's CPU plugin is the one mmclip uses).
"""
import os
from typing import NamedTuple, Optional

BACKENDS = ('torch', 'onnxruntime', 'openvino')
EXPORTED = ('onnxruntime', 'openvino')


class Spelling(NamedTuple):
    """How messages name the options: the Python API's keywords or a tool's flags."""
    backend: str    # formatted with the backend's name
    weights: str
    precision: str  # formatted with a precision
    no_compile: str


API = Spelling("backend={!r}", 'pretrained', "precision={!r}", 'use compile=False')
CLI = Spelling('--backend {}', 'CHECKPOINT', '--precision {}', 'drop --compile')


def is_exported(weights) -> bool:
    """Whether ``weights`` names an exported ``.onnx`` file."""
    return isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith('.onnx')


def default_backend(weights, device: Optional[str] = None) -> str:
    """'torch' for torch weights; for an ``.onnx``, 'openvino' on the CPU (``device`` None
    or 'cpu') where the ``openvino`` extra is installed, else 'onnxruntime'."""
    if not is_exported(weights):
        return 'torch'
    if device is None or str(device).split(':')[0] == 'cpu':
        from mmclip.deployment import EXPORTED_BACKENDS
        try:
            EXPORTED_BACKENDS['openvino'].require()
            return 'openvino'
        except ImportError:
            pass
    return 'onnxruntime'


def choose_backend(weights, backend: Optional[str] = None, precision: str = 'fp32',
                   compile: bool = False, spelling: Spelling = API,
                   device: Optional[str] = None) -> str:
    """The runtime for ``weights`` on ``device`` (None: the CPU for an ``.onnx``):
    ``backend``, or by default ``default_backend``; checked against the weights, the
    precision, compile and the installed extras.

    Raises:
        ValueError: a backend that cannot run these weights in this precision, or one
            whose extra is not installed (``MissingExtraError``); one line saying what to
            change, in ``spelling``'s terms.
    """
    if backend is not None and backend not in BACKENDS:
        option = spelling.backend.partition('=')[0].partition(' ')[0]
        raise ValueError(f'{option} must be one of {BACKENDS}; got {backend!r}.')
    exported = is_exported(weights)
    backend = backend or default_backend(weights, device)
    named = spelling.backend.format(backend)
    if backend == 'torch':
        if exported:
            raise ValueError(f'{named} runs torch weights; {weights} is an exported .onnx: '
                             f'use {spelling.backend.format("onnxruntime")} or '
                             f'{spelling.backend.format("openvino")}.')
        return backend
    if not exported:
        raise ValueError(f'{named} needs {spelling.weights}=<an .onnx file from '
                         f'tools/deployment/pytorch2onnx.py> (it runs an exported .onnx); '
                         f'got {weights!r}.')
    if compile:
        raise ValueError(f'{named} runs the exported graph: {spelling.no_compile}.')
    from mmclip.deployment import EXPORTED_BACKENDS
    runtime = EXPORTED_BACKENDS[backend]
    if precision not in runtime.PRECISIONS:
        raise ValueError(f'{named} runs an .onnx in {" or ".join(runtime.PRECISIONS)}: use '
                         f'{spelling.precision.format(runtime.PRECISIONS[0])}.')
    runtime.require()
    return backend
