"""Cross-entropy on hard labels or soft targets, with optional label smoothing."""
import torch
import torch.nn.functional as F
from torch import nn

from mmclip.registry import MODELS


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Cross-entropy loss.

    Config keys:
        label_smooth_val: epsilon of label smoothing; targets become
            ``(1 - eps) * target + eps / num_classes``.
        loss_weight: multiplier of the loss.

    ``forward(cls_score [B, K], target)``: ``target`` is class indices [B] or soft
    targets [B, K] (from Mixup/CutMix); returns the batch mean.
    """

    def __init__(self, label_smooth_val: float = 0.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= label_smooth_val < 1.0:
            raise ValueError(f'label_smooth_val must be in [0, 1); got {label_smooth_val}.')
        self.label_smooth_val = label_smooth_val
        self.loss_weight = loss_weight

    def forward(self, cls_score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            loss = F.cross_entropy(cls_score, target, label_smoothing=self.label_smooth_val)
        else:
            num_classes = cls_score.shape[-1]
            target = target * (1 - self.label_smooth_val) + self.label_smooth_val / num_classes
            loss = torch.sum(-target * F.log_softmax(cls_score, dim=-1), dim=-1).mean()
        return self.loss_weight * loss
