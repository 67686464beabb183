"""The part every runtime of an exported ``.onnx`` shares: an mmengine ``BaseModel`` with the
torch model's interface, whose file is checked before its runtime opens it.

Its data preprocessor stacks the test pipeline's uint8 BGR images and flips them to RGB (no
normalisation: the graph does it), and ``forward`` returns logits ('tensor') or DataSamples
('predict'), so the inferencer, ``tools/test.py`` (same dataset, pipeline and metrics) and
``tools/predict.py`` use it as they use the torch model.
"""
import copy
import importlib
import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import BaseModel

from mmclip.models.heads.vision_transformer_head import (
    predictions_from_scores,
    scores_from_logits,
)
from mmclip.registry import MODELS
from mmclip.structures import DataSample

from .onnx_check import check_onnx_file

# extra -> (what needs it, the command that installs it)
EXTRAS = {'onnx': ('ONNX export / ONNX Runtime', "pip install 'mmclip[onnx]'"),
          'openvino': ('The OpenVINO backend', "pip install 'mmclip[openvino]'")}


class MissingExtraError(ImportError):
    """An optional dependency (the ``onnx`` or ``openvino`` extra) is not installed."""


def require(*modules: str, extra: str = 'onnx') -> None:
    """Import ``modules`` or raise one line naming the missing ones and the fix."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        user, command = EXTRAS[extra]
        raise MissingExtraError(f'{user} needs {", ".join(missing)}, which is not '
                                f'installed: {command}')


class ExportedClassifier(BaseModel):
    """An ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` run by a runtime.

    Subclasses name the runtime's modules and extra (``REQUIRES``, ``EXTRA``), the
    precisions it runs (``PRECISIONS``) and implement ``run_graph``. The constructor checks
    the file (``check_onnx_file``) before a subclass hands it to its runtime.

    ``forward(inputs [B, 3, H, W] RGB 0-255, data_samples, mode)``: 'tensor' -> logits
    [B, K] (float32, CPU); 'predict' -> DataSamples with ``pred_score`` / ``pred_label``,
    scored as the exported head scores (``scores``).
    """
    NAME = 'an exported model'
    REQUIRES: Sequence[str] = ()
    EXTRA = 'onnx'
    PRECISIONS: Sequence[str] = ('fp32', )

    def __init__(self, onnx_file: Union[str, os.PathLike], precision: str = 'fp32',
                 init_cfg: Optional[dict] = None) -> None:
        if precision not in self.PRECISIONS:
            raise ValueError(f'{self.NAME} runs an .onnx in {" or ".join(self.PRECISIONS)}; '
                             f'got precision={precision!r}.')
        self.require()
        # Pipelines give BGR; the graph takes RGB and normalises itself.
        super().__init__(data_preprocessor=MODELS.build(
            dict(type='ClsDataPreprocessor', to_rgb=True)), init_cfg=init_cfg)
        self.onnx_file = os.fspath(onnx_file)
        self.precision = precision
        info = check_onnx_file(self.onnx_file)
        self.dataset_meta = dict(classes=info.classes)
        self.score_function = info.scores

    @classmethod
    def require(cls) -> None:
        require(*cls.REQUIRES, extra=cls.EXTRA)

    def run_graph(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB [B, 3, H, W] -> float32 logits [B, K]."""
        raise NotImplementedError

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode not in ('tensor', 'predict'):
            raise ValueError(f"{self.NAME} only predicts: mode must be 'tensor' or "
                             f"'predict'; got {mode!r}.")
        # The preprocessor's floats are whole numbers 0-255: the cast back is exact.
        images = np.ascontiguousarray(inputs.detach().to('cpu', torch.uint8).numpy())
        logits = torch.from_numpy(np.asarray(self.run_graph(images), dtype=np.float32))
        return logits if mode == 'tensor' else predictions_from_scores(self.scores(logits),
                                                                        data_samples)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] -> float32 scores as the exported head scores them: softmax over
        the classes, or each class's sigmoid (SigLIP; ``mmclip.scores`` metadata)."""
        return scores_from_logits(logits, self.score_function)


def build_with_config(cls: type, config, onnx_file: Union[str, os.PathLike],
                      **kwargs) -> ExportedClassifier:
    """``cls(onnx_file, **kwargs)`` with ``model.cfg`` (the test pipeline's source) from
    ``config``, a ``Config`` or a config file (read first, so that a bad one fails before
    the model loads; a zoo name is resolved by ``mmclip.apis``), in eval mode, as
    ``get_model`` returns one."""
    cfg = (copy.deepcopy(config) if isinstance(config, Config) else
           Config.fromfile(os.fspath(config)))
    model = cls(onnx_file, **kwargs)
    model.cfg = cfg
    return model.eval()
