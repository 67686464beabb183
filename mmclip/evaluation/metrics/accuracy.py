"""Top-k accuracy over a dataset, optionally per class and as a confusion matrix."""
import logging
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmclip.registry import METRICS

from .benchmark import mean_per_class_recall, project_scores

# mmengine's 'gpu' collection is its all_gather_object path: results travel through the
# process group (NCCL, or gloo on CPU), so nodes need no shared temp folder. It returns
# them in dataset order and drops the samples DefaultSampler repeats to pad the last
# rank, so every image counts exactly once.
GATHER_WITHOUT_SHARED_FS = 'gpu'


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent, through mmengine's Evaluator.

    Images that ``LoadImageFromFile(on_error='skip')`` could not read are left out of
    every number; each is named in one warning line and their count is reported as
    ``num_skipped`` (``num_images`` counts the images evaluated).

    Config keys:
        topk: the k of each ``top{k}`` result, e.g. (1, 5).
        per_class: also report ``per_class`` [K], the top-1 accuracy of each class in
            percent (NaN for classes without images).
        confusion_matrix: also report ``confusion_matrix`` [K, K] counts, rows = ground
            truth, columns = top-1 prediction.
        mean_recall: also report ``mean_per_class_recall``: the mean over the classes
            with images of each one's top-1 accuracy (clip_benchmark's third number).
        collect_device / prefix: as mmengine's ``BaseMetric`` (results are gathered
            without a shared folder by default).

    Reads ``gt_label`` [1], ``pred_score`` [K] and ``load_error`` of each DataSample.
    When the dataset's ``metainfo['class_map']`` maps its classes to model outputs
    (ImageNet-R/-A, ObjectNet) and the model has other outputs than the dataset's
    classes, the scores are restricted to those outputs first (see ``project_scores``).
    Results, prefixed ``accuracy/``: ``top1``, ``top5``, ..., ``num_images``,
    ``num_skipped`` and, when asked, ``per_class`` and ``confusion_matrix`` (tensors).
    """

    default_prefix = 'accuracy'

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, ),
                 per_class: bool = False,
                 confusion_matrix: bool = False,
                 mean_recall: bool = False,
                 collect_device: str = GATHER_WITHOUT_SHARED_FS,
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not topk or any(not isinstance(k, int) or k < 1 for k in topk):
            raise ValueError(f'topk must be positive ints, e.g. (1, 5); got {topk!r}.')
        self.topk = topk
        self.per_class = per_class
        self.confusion_matrix = confusion_matrix
        self.mean_recall = mean_recall

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        meta = self.dataset_meta or {}
        classes = meta.get('classes')
        for sample in data_samples:
            score = project_scores(sample['pred_score'], meta.get('class_map'),
                                   len(classes) if classes else None)
            k = min(max(self.topk), score.numel())
            self.results.append(dict(
                gt_label=int(sample['gt_label'][0]),
                topk_labels=score.topk(k).indices.tolist(),
                num_classes=score.numel(),
                load_error=sample.get('load_error')))

    def compute_metrics(self, results: List[dict]) -> Dict[str, Union[float, int, torch.Tensor]]:
        skipped = [r for r in results if r['load_error'] is not None]
        read = [r for r in results if r['load_error'] is None]
        for record in skipped:
            print_log(f"Skipped: {record['load_error']}", logger='current',
                      level=logging.WARNING)
        if not read:
            raise ValueError(f'None of the {len(results)} images could be read; nothing to '
                             'evaluate.')
        gt = torch.tensor([r['gt_label'] for r in read])
        ranked = torch.tensor([r['topk_labels'] for r in read])
        metrics: Dict[str, Union[float, int, torch.Tensor]] = {}
        for k in self.topk:
            hits = (ranked[:, :k] == gt[:, None]).any(dim=1)
            metrics[f'top{k}'] = 100.0 * hits.double().mean().item()
        if self.mean_recall:
            metrics['mean_per_class_recall'] = 100.0 * mean_per_class_recall(
                gt.numpy(), ranked[:, 0].numpy())
        metrics['num_images'] = len(read)
        metrics['num_skipped'] = len(skipped)
        if self.per_class or self.confusion_matrix:
            matrix = self._confusion(gt, ranked[:, 0], self._num_classes(read))
            if self.per_class:
                metrics['per_class'] = 100.0 * matrix.diag().double() / matrix.sum(dim=1)
            if self.confusion_matrix:
                metrics['confusion_matrix'] = matrix
        return metrics

    def _num_classes(self, read: List[dict]) -> int:
        classes = (self.dataset_meta or {}).get('classes')
        return len(classes) if classes else read[0]['num_classes']

    @staticmethod
    def _confusion(gt: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
        """LongTensor [K, K]: entry (i, j) counts images of class i predicted as j."""
        flat = torch.bincount(gt * num_classes + pred, minlength=num_classes**2)
        return flat.reshape(num_classes, num_classes)
