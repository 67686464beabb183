"""Write every image's prediction, in dataset order, to a .json or .pkl file."""
import json
import logging
import math
import os
import os.path as osp
import pickle
import pickletools
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


RECORD_KEYS = ('img_path', 'gt_label', 'pred_label', 'pred_score', 'load_error')
# What a pickle of plain lists, dicts, strings and numbers never holds: an existing .pkl
# with one of these was not written here and is not even unpickled.
_BUILDING_OPCODES = {'GLOBAL', 'STACK_GLOBAL', 'REDUCE', 'BUILD', 'INST', 'OBJ', 'NEWOBJ',
                     'NEWOBJ_EX', 'EXT1', 'EXT2', 'EXT4', 'PERSID', 'BINPERSID'}


def _plain_unpickle(data: bytes):
    if any(op.name in _BUILDING_OPCODES for op, _, _ in pickletools.genops(data)):
        raise ValueError('builds objects')
    return pickle.loads(data)


def is_predictions_file(path: str) -> bool:
    """Whether ``path`` holds what ``DumpPredictions`` writes (a list of its records), so
    that a rerun may replace it; any other file is the user's."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
        records = (json.loads(data) if path.lower().endswith('.json') else
                   _plain_unpickle(data))
    except Exception:  # noqa: BLE001  (anything unreadable is not ours)
        return False
    return isinstance(records, list) and all(
        isinstance(r, dict) and tuple(r) == RECORD_KEYS for r in records)


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
