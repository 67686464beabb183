"""An exported ``.onnx`` classifier run by ONNX Runtime, with the torch model's interface.

``OnnxRuntimeClassifier`` is an mmengine ``BaseModel``: its data preprocessor stacks the
test pipeline's uint8 BGR images and flips them to RGB (no normalisation: the graph does
it), and ``forward`` returns logits ('tensor') or DataSamples ('predict'), so the
inferencer, ``tools/test.py`` (same dataset, pipeline and metrics) and ``tools/predict.py``
use it as they use the torch model.
"""
import importlib
import json
import os
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.model import BaseModel

from mmclip.models.heads.vision_transformer_head import predictions_from_logits
from mmclip.registry import MODELS
from mmclip.structures import DataSample
from mmclip.utils.cpu import usable_cores

ONNX_EXTRA = "pip install 'mmclip[onnx]'"


class MissingExtraError(ImportError):
    """An optional dependency of the ``onnx`` extra is not installed."""


def require(*modules: str) -> None:
    """Import ``modules`` or raise one line naming the missing ones and the fix."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f'ONNX export / ONNX Runtime needs {", ".join(missing)}, '
                                f'which is not installed: {ONNX_EXTRA}')


def create_session(onnx_file: Union[str, Path], device: str = 'cpu',
                   threads: Optional[int] = None):
    """An ``InferenceSession`` with intra-op threads set explicitly (default: the usable
    cores) and one inter-op thread; CUDA provider first for ``device='cuda'``."""
    require('onnxruntime')
    import onnxruntime as ort
    if not Path(onnx_file).is_file():
        raise FileNotFoundError(f'ONNX model {onnx_file} does not exist.')
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


def onnx_metadata(session) -> dict:
    """The ``mmclip.*`` metadata the exporter wrote (class names, image size)."""
    props = session.get_modelmeta().custom_metadata_map
    classes = props.get('mmclip.classes')
    return dict(classes=tuple(json.loads(classes)) if classes else None,
                image_size=int(props['mmclip.image_size']) if 'mmclip.image_size' in props
                else None)


@MODELS.register_module()
class OnnxRuntimeClassifier(BaseModel):
    """An ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` as a classifier.

    Config keys:
        onnx_file: the exported model (input ``images``: uint8 RGB [B, 3, H, W]).
        device: 'cpu' or 'cuda' (ONNX Runtime's CUDA provider).
        threads: ONNX Runtime intra-op threads (default: the usable cores).

    ``forward(inputs [B, 3, H, W] RGB 0-255, data_samples, mode)``: 'tensor' -> logits
    [B, K] (float32, CPU); 'predict' -> DataSamples with ``pred_score`` / ``pred_label``.
    """

    def __init__(self, onnx_file: str, device: str = 'cpu', threads: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        # Pipelines give BGR; the graph takes RGB and normalises itself.
        super().__init__(data_preprocessor=MODELS.build(
            dict(type='ClsDataPreprocessor', to_rgb=True)), init_cfg=init_cfg)
        self.onnx_file = str(onnx_file)
        self.session = create_session(onnx_file, device, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.dataset_meta = dict(classes=onnx_metadata(self.session)['classes'])

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode not in ('tensor', 'predict'):
            raise ValueError(f"An ONNX Runtime model only predicts: mode must be 'tensor' or "
                             f"'predict'; got {mode!r}.")
        # The preprocessor's floats are whole numbers 0-255: the cast back is exact.
        images = np.ascontiguousarray(inputs.detach().to('cpu', torch.uint8).numpy())
        (logits, ) = self.session.run(None, {self.input_name: images})
        logits = torch.from_numpy(logits)
        return logits if mode == 'tensor' else predictions_from_logits(logits, data_samples)


def build_onnxruntime_classifier(config, onnx_file: Union[str, os.PathLike],
                                 device: str = 'cpu',
                                 threads: Optional[int] = None) -> OnnxRuntimeClassifier:
    """``onnx_file`` run by ONNX Runtime, with ``model.cfg`` (the test pipeline's source)
    from ``config`` (a zoo name, a config path or a ``Config``) and the class names the
    exporter stored, as ``get_model`` returns a torch model."""
    from mmclip.apis.model_zoo import resolve_config
    cfg, _ = resolve_config(config)
    model = OnnxRuntimeClassifier(os.fspath(onnx_file), device, threads)
    model.cfg = cfg
    return model.eval()
