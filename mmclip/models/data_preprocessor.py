"""Batch collation on the model's device: uint8 images -> normalised float tensors."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor

from mmclip.registry import BATCH_AUGMENTS, MODELS


@MODELS.register_module()
class ClsDataPreprocessor(BaseDataPreprocessor):
    """Stack, move to the device, flip channels, then normalise.

    Images travel from the data loader as uint8 [3, H, W] in BGR order (the OpenMMLab
    convention); converting and normalising here, on the model's device, keeps the
    loader's work and the host-to-device copy at one byte per pixel.

    Config keys:
        mean / std: per-channel values in 0-255 units, in the model's channel order
            (RGB for CLIP: mean 0.48145466, 0.4578275, 0.40821073 and std 0.26862954,
            0.26130258, 0.27577711, times 255).
        to_rgb: swap BGR input to RGB before normalising.
        num_classes: K; needed to turn labels into soft targets for ``batch_augments``.
        batch_augments: config of a batch augment (Mixup/CutMix) applied in training.

    Input ``data``: ``dict(inputs=list of [3, H, W] tensors or a [B, 3, H, W] tensor,
    data_samples=list of DataSample)``. Output: the same dict with ``inputs`` a float
    [B, 3, H, W] tensor.

    Attributes (read by the ONNX export, which puts this step in the graph): ``to_rgb``,
    ``normalize`` (whether mean / std are given) and, if so, the ``mean`` and ``std``
    buffers, [3, 1, 1].
    """

    def __init__(self,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 to_rgb: bool = False,
                 num_classes: Optional[int] = None,
                 batch_augments: Optional[dict] = None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError('ClsDataPreprocessor needs both mean and std, or neither.')
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                                 False)
            self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                                 False)
        self.to_rgb = to_rgb
        self.num_classes = num_classes
        if batch_augments is not None and num_classes is None:
            raise ValueError('batch_augments needs num_classes to build soft targets.')
        self.batch_augments = BATCH_AUGMENTS.build(batch_augments) if batch_augments else None

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            shapes = {tuple(x.shape) for x in inputs}
            if len(shapes) != 1:
                raise ValueError(f'All images of a batch must have one shape; got '
                                 f'{sorted(shapes)}. Add a crop or resize to the same size '
                                 'to the pipeline.')
            inputs = torch.stack(list(inputs))
        inputs = inputs.to(self.device, non_blocking=True)
        if self.to_rgb and inputs.shape[1] == 3:
            inputs = inputs.flip(1)
        inputs = inputs.float()
        if self.normalize:
            inputs = (inputs - self.mean) / self.std

        data_samples = data.get('data_samples', None)
        if training and self.batch_augments is not None and data_samples is not None:
            labels = torch.stack([s.gt_label[0] for s in data_samples]).to(self.device)
            scores = F.one_hot(labels, self.num_classes).float()
            inputs, scores = self.batch_augments(inputs, scores)
            for sample, score in zip(data_samples, scores):
                sample.set_gt_score(score)
        return dict(inputs=inputs, data_samples=data_samples)
