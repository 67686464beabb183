"""Export a classifier to ONNX with its input normalisation embedded.

The graph takes what users have, a batch of uint8 RGB images ``images`` [B, 3, H, W]
(B dynamic; H, W the config's crop), and returns ``logits`` [B, K] (float32, before
softmax). Channel order, mean and std of the model's ``ClsDataPreprocessor`` run inside the
graph, so no user re-implements them (the usual source of "large difference after
export"). Resizing and cropping stay outside, as the config's test pipeline.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from mmclip.datasets.transforms import build_test_pipeline
from mmclip.utils.atomic_file import PARTIAL_PREFIX

UINT8_RGB_INPUT = 'images'
LOGITS_OUTPUT = 'logits'
# A protobuf file holds at most 2 GiB; bigger models keep their weights in OUT.onnx.data.
_INLINE_WEIGHTS_LIMIT = 1_800_000_000


class NormalizedClassifier(nn.Module):
    """uint8 RGB images [B, 3, H, W] -> logits [B, K]: the model's data preprocessor
    (channel order, mean / std) followed by its ``forward(..., mode='tensor')``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        pre = model.data_preprocessor
        # Pipelines give BGR and ``to_rgb`` flips it; the graph gets RGB, so it flips
        # only for a model that wants BGR.
        self.flip = not pre.to_rgb
        self.register_buffer('mean', pre.mean.clone() if pre.normalize else torch.zeros(3, 1, 1))
        self.register_buffer('std', pre.std.clone() if pre.normalize else torch.ones(3, 1, 1))
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.flip:
            x = x.flip(1)
        return self.model((x - self.mean) / self.std)


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _save_whole(program, out_file: Path, external_data: bool) -> None:
    """Save ``program`` into a partial folder beside ``out_file``, then move its files
    into place, the .onnx last: an interrupted export leaves neither half a model nor
    a model whose weights file is incomplete."""
    staging = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=out_file.parent))
    try:
        program.save(str(staging / out_file.name), external_data=external_data)
        for path in sorted(staging.iterdir(), key=lambda p: p.name == out_file.name):
            os.replace(path, out_file.parent / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_onnx(model: nn.Module, out_file: Union[str, Path],
                opset: Optional[int] = None) -> Path:
    """Export ``model`` (from ``get_model``) as in eval mode to ``out_file``.

    Uses ``torch.onnx.export(dynamo=True)`` with a dynamic batch dimension, torch's
    default (recent) opset unless ``opset`` is given, and the weights in
    ``<out_file>.data`` when they would not fit a 2 GiB protobuf. The class names
    (``model.dataset_meta['classes']``) and the input size go into the model's metadata.
    ``out_file`` is replaced only by a complete model.
    """
    from .exported_classifier import require
    require('onnx', 'onnxscript')
    out_file = Path(out_file)
    size = model.backbone.img_size
    was_training = model.training
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    batch = torch.export.Dim('batch', min=1, max=65536)
    try:
        program = torch.onnx.export(
            NormalizedClassifier(model).eval(), (example, ), input_names=[UINT8_RGB_INPUT],
            output_names=[LOGITS_OUTPUT], dynamic_shapes={'images': {0: batch}},
            opset_version=opset, dynamo=True, external_data=False, verbose=False)
    finally:
        model.train(was_training)
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    metadata = {'mmclip.input': f'uint8 RGB [batch, 3, {size}, {size}], not normalised',
                'mmclip.image_size': str(size),
                # The logits are exported; the runtimes score them as the head does.
                'mmclip.scores': getattr(model.head, 'score_function', 'softmax')}
    if classes is not None:
        metadata['mmclip.classes'] = json.dumps(list(classes))
    program.model.metadata_props.update(metadata)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    _save_whole(program, out_file, external_data=_param_bytes(model) > _INLINE_WEIGHTS_LIMIT)
    return out_file


def verify_onnx(model: nn.Module, onnx_file: Union[str, Path], images: list,
                threads: Optional[int] = None) -> float:
    """Max |logit difference| between ``model`` and ONNX Runtime on ``images`` (paths),
    preprocessed by the config's test pipeline (``model.cfg``) and run as one batch."""
    from mmengine.dataset import pseudo_collate

    from .onnxruntime_classifier import build_onnxruntime_classifier
    pipeline, _ = build_test_pipeline(model.cfg)
    batch = pseudo_collate([pipeline(dict(img_path=str(path))) for path in images])
    session_model = build_onnxruntime_classifier(model.cfg, onnx_file, threads=threads)
    with torch.no_grad():
        expected = model(model.data_preprocessor(batch, False)['inputs'])
        got = session_model(session_model.data_preprocessor(batch, False)['inputs'])
    return float((got - expected.float().cpu()).abs().max())
