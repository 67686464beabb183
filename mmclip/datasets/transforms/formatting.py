"""Turn a pipeline's ``results`` dict into the model's input and its DataSample."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmclip.registry import TRANSFORMS
from mmclip.structures import DataSample


@TRANSFORMS.register_module()
class PackInputs(BaseTransform):
    """Pack ``results['img']`` (uint8 [H, W, C]) and its labels for the data preprocessor.

    Output: ``dict(inputs=uint8 tensor [C, H, W] (BGR, as loaded),
    data_samples=DataSample)`` with ``gt_label`` from ``results['gt_label']`` when present
    and the ``meta_keys`` found in ``results`` as metainfo (``load_error`` is how a
    skipped, unreadable image reaches the metric).

    Config keys:
        meta_keys: keys copied into the DataSample's metainfo when present.
    """

    DEFAULT_META_KEYS = ('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'flip',
                         'flip_direction', 'load_error')

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        inputs = torch.from_numpy(np.ascontiguousarray(results['img'].transpose(2, 0, 1)))
        data_sample = DataSample()
        if results.get('gt_label') is not None:
            data_sample.set_gt_label(results['gt_label'])
        data_sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
