"""The per-image record that flows from the dataset to the metric."""
from numbers import Number
from typing import Sequence, Union

import numpy as np
import torch
from mmengine.structures import BaseDataElement

LabelType = Union[torch.Tensor, np.ndarray, Sequence, Number]


def format_label(value: LabelType) -> torch.Tensor:
    """Turn an int, a sequence of ints, an array or a tensor into a 1-D LongTensor."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = int(value.item())
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        value = torch.tensor(value)
    elif isinstance(value, Number) and not isinstance(value, bool):
        value = torch.tensor([value])
    if not isinstance(value, torch.Tensor):
        raise TypeError(f'A label must be an int, a sequence of ints, an array or a '
                        f'tensor; got {type(value).__name__}.')
    return value.long().reshape(-1)


class DataSample(BaseDataElement):
    """Labels and predictions of one image.

    Fields (all optional):
        gt_label: LongTensor [K], the ground-truth class index (K = 1 for single-label).
        gt_score: FloatTensor [num_classes], soft targets written by Mixup/CutMix.
        pred_label: LongTensor [1], the predicted class index.
        pred_score: FloatTensor [num_classes], softmax scores.
    Meta information (``img_path``, ``ori_shape``, ``img_shape``, ``sample_idx``...)
    is set through ``set_metainfo``.
    """

    def set_gt_label(self, value: LabelType) -> 'DataSample':
        self.set_field(format_label(value), 'gt_label', dtype=torch.Tensor)
        return self

    def set_gt_score(self, value: torch.Tensor) -> 'DataSample':
        self.set_field(torch.as_tensor(value), 'gt_score', dtype=torch.Tensor)
        return self

    def set_pred_label(self, value: LabelType) -> 'DataSample':
        self.set_field(format_label(value), 'pred_label', dtype=torch.Tensor)
        return self

    def set_pred_score(self, value: torch.Tensor) -> 'DataSample':
        if value.ndim != 1:
            raise ValueError(f'pred_score must be 1-D [num_classes]; got shape '
                             f'{tuple(value.shape)}.')
        self.set_field(value, 'pred_score', dtype=torch.Tensor)
        return self
