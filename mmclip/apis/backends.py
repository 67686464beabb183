"""Which runtime runs a model's weights: decided here once, for the inferencer,
``inference_model``, ``tools/test.py`` and ``tools/predict.py``.

An ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` runs in ONNX Runtime (the default
for that suffix) or OpenVINO; anything else (a checkpoint, a URL, the zoo weights) in
torch.
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


def choose_backend(weights, backend: Optional[str] = None, precision: str = 'fp32',
                   compile: bool = False, spelling: Spelling = API) -> str:
    """The runtime for ``weights``: ``backend``, or by default 'onnxruntime' for an
    ``.onnx`` and 'torch' otherwise; checked against the weights, the precision, compile
    and the installed extras.

    Raises:
        ValueError: a backend that cannot run these weights in this precision, or one
            whose extra is not installed (``MissingExtraError``); one line saying what to
            change, in ``spelling``'s terms.
    """
    if backend is not None and backend not in BACKENDS:
        option = spelling.backend.partition('=')[0].partition(' ')[0]
        raise ValueError(f'{option} must be one of {BACKENDS}; got {backend!r}.')
    exported = is_exported(weights)
    backend = backend or ('onnxruntime' if exported else 'torch')
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
