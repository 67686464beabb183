"""Write every image's prediction, in dataset order, to a .json or .pkl file."""
import json
import logging
import math
import os
import os.path as osp
import pickle
from typing import List, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmclip.registry import METRICS
from mmclip.utils.atomic_file import atomic_write

from .accuracy import GATHER_WITHOUT_SHARED_FS
from .benchmark import project_scores

OUT_FORMATS = ('.json', '.pkl')


def check_out_file(out_file: str) -> None:
    """Raise a ValueError unless ``out_file`` ends in one of ``OUT_FORMATS``."""
    if osp.splitext(out_file)[1].lower() not in OUT_FORMATS:
        raise ValueError(f"The predictions file must end in one of {OUT_FORMATS}; "
                         f"got '{out_file}'.")


@METRICS.register_module()
class DumpPredictions(BaseMetric):
    """Save one record per image, in dataset order, to ``out_file``; computes no metric.

    Each record: ``img_path``, ``gt_label`` (int or None), ``pred_label`` (int),
    ``pred_score`` (the softmax score of ``pred_label``; None if it is not finite, so the
    JSON stays valid) and ``load_error`` (None, or why a skipped image could not be read;
    its prediction fields are then None). Labels are the dataset's: on a dataset with a
    ``class_map`` (ImageNet-R/-A, ObjectNet) the scores are restricted to its classes
    first, as ``Accuracy`` does. ``.json`` writes a list of objects, ``.pkl``
    pickles the same list. The file appears whole or not at all (written beside it, then
    renamed), so an interrupted run never leaves a truncated one.

    Config keys:
        out_file: path ending in ``.json`` or ``.pkl``.
        collect_device: as mmengine's ``BaseMetric``.
    """

    default_prefix = 'predictions'  # no metric comes out; this only silences mmengine

    def __init__(self, out_file: str,
                 collect_device: str = GATHER_WITHOUT_SHARED_FS) -> None:
        check_out_file(out_file)
        super().__init__(collect_device=collect_device)
        self.out_file = out_file

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        meta = self.dataset_meta or {}
        classes = meta.get('classes')
        for sample in data_samples:
            error = sample.get('load_error')
            scores = project_scores(sample['pred_score'], meta.get('class_map'),
                                    len(classes) if classes else None)
            score, label = scores.max(dim=0)
            gt = sample.get('gt_label')
            self.results.append(dict(
                img_path=sample.get('img_path'),
                gt_label=None if gt is None else int(gt[0]),
                pred_label=None if error else int(label),
                pred_score=None if error or not math.isfinite(score) else float(score),
                load_error=error))

    def compute_metrics(self, results: List[dict]) -> dict:
        folder = osp.dirname(osp.abspath(self.out_file))
        os.makedirs(folder, exist_ok=True)
        if self.out_file.lower().endswith('.json'):
            data = json.dumps(results, indent=1, allow_nan=False).encode('utf-8')
        else:
            data = pickle.dumps(results)
        with atomic_write(self.out_file) as f:
            f.write(data)
        print_log(f'Wrote the predictions of {len(results)} images to {self.out_file}',
                  logger='current', level=logging.INFO)
        return {}
