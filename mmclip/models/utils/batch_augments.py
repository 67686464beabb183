"""Mixup and CutMix on whole batches, run by ``ClsDataPreprocessor`` in training.

Every augment is called as ``augment(inputs [B, 3, H, W] float, scores [B, K] float)``
and returns the mixed ``(inputs, scores)``, same shapes; ``scores`` are one-hot (or
already soft) targets. The mixing partner of sample i is ``perm[i]`` for a random
permutation of the batch, and one mixing ratio ``lam ~ Beta(alpha, alpha)`` is drawn per
batch (as timm and mmpretrain do). Randomness comes from numpy (``lam``, box position)
and torch (the permutation), both seeded by mmengine's ``randomness.seed``.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from mmclip.registry import BATCH_AUGMENTS

Batch = Tuple[torch.Tensor, torch.Tensor]


def _check_batch(inputs: torch.Tensor, scores: torch.Tensor) -> None:
    if inputs.ndim != 4 or scores.ndim != 2 or inputs.shape[0] != scores.shape[0]:
        raise ValueError('Batch augments need inputs [B, C, H, W] and scores [B, K] with one B; '
                         f'got {tuple(inputs.shape)} and {tuple(scores.shape)}.')


def _check_alpha(alpha: float) -> float:
    if alpha <= 0:
        raise ValueError(f'alpha of the Beta(alpha, alpha) mixing ratio must be > 0; got {alpha}.')
    return float(alpha)


@BATCH_AUGMENTS.register_module()
class Mixup:
    """Mixup (Zhang et al., 2018): ``lam * x + (1 - lam) * x[perm]``, scores likewise.

    Config keys:
        alpha: the Beta(alpha, alpha) parameter of the mixing ratio (timm's default 0.8).
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = _check_alpha(alpha)

    def mix(self, inputs: torch.Tensor, scores: torch.Tensor, lam: float,
            perm: torch.Tensor) -> Batch:
        """Mix with a given ratio and partner permutation (deterministic)."""
        _check_batch(inputs, scores)
        mixed_inputs = lam * inputs + (1 - lam) * inputs[perm]
        mixed_scores = lam * scores + (1 - lam) * scores[perm]
        return mixed_inputs, mixed_scores

    def __call__(self, inputs: torch.Tensor, scores: torch.Tensor) -> Batch:
        lam = float(np.random.beta(self.alpha, self.alpha))
        perm = torch.randperm(inputs.shape[0], device=inputs.device)
        return self.mix(inputs, scores, lam, perm)


@BATCH_AUGMENTS.register_module()
class CutMix:
    """CutMix (Yun et al., 2019): paste a box of ``x[perm]`` into ``x``.

    The box covers a fraction ``1 - lam`` of the image, centred uniformly at random and
    clipped at the borders; the scores are mixed by the area actually pasted
    (timm's ``correct_lam``), so a clipped box does not over-count the partner.

    Config keys:
        alpha: the Beta(alpha, alpha) parameter of ``lam`` (timm's default 1.0).
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = _check_alpha(alpha)

    @staticmethod
    def box(height: int, width: int, lam: float, center: Tuple[float, float]
            ) -> Tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of a box with area ``(1 - lam) * H * W`` at ``center`` (y, x)."""
        cut = np.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = int(center[0]), int(center[1])
        y0, y1 = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
        x0, x1 = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
        return int(y0), int(y1), int(x0), int(x1)

    def mix(self, inputs: torch.Tensor, scores: torch.Tensor, lam: float,
            perm: torch.Tensor, center: Tuple[float, float]) -> Batch:
        """Paste the box for ``lam`` at ``center`` (deterministic)."""
        _check_batch(inputs, scores)
        height, width = inputs.shape[-2:]
        y0, y1, x0, x1 = self.box(height, width, lam, center)
        mixed_inputs = inputs.clone()
        mixed_inputs[:, :, y0:y1, x0:x1] = inputs[perm, :, y0:y1, x0:x1]
        kept = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
        mixed_scores = kept * scores + (1 - kept) * scores[perm]
        return mixed_inputs, mixed_scores

    def __call__(self, inputs: torch.Tensor, scores: torch.Tensor) -> Batch:
        lam = float(np.random.beta(self.alpha, self.alpha))
        perm = torch.randperm(inputs.shape[0], device=inputs.device)
        height, width = inputs.shape[-2:]
        center = (np.random.uniform(0, height), np.random.uniform(0, width))
        return self.mix(inputs, scores, lam, perm, center)


@BATCH_AUGMENTS.register_module()
class RandomBatchAugment:
    """Apply one of several batch augments per batch, or none.

    Config keys:
        augments: configs of the candidates, e.g. ``[dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0)]``.
        probs: probability of each candidate; their sum may be below 1, the rest being
            the probability of leaving the batch unchanged. Default: uniform over the
            candidates.

    ``dict(type='RandomBatchAugment', augments=[Mixup 0.8, CutMix 1.0], probs=[0.5, 0.5])``
    is timm's ``mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5``.
    """

    def __init__(self, augments: Sequence[dict], probs: Optional[Sequence[float]] = None) -> None:
        if not augments:
            raise ValueError('RandomBatchAugment needs at least one augment config.')
        self.augments: List = [BATCH_AUGMENTS.build(cfg) for cfg in augments]
        if probs is None:
            probs = [1.0 / len(self.augments)] * len(self.augments)
        probs = [float(p) for p in probs]
        if len(probs) != len(self.augments) or min(probs) < 0 or sum(probs) > 1 + 1e-6:
            raise ValueError(f'probs must be {len(self.augments)} non-negative numbers summing to '
                             f'at most 1 (one per augment); got {probs}.')
        self.probs = probs

    def __call__(self, inputs: torch.Tensor, scores: torch.Tensor) -> Batch:
        _check_batch(inputs, scores)
        choices = list(range(len(self.augments))) + [-1]
        index = np.random.choice(choices, p=self.probs + [max(0.0, 1.0 - sum(self.probs))])
        if index < 0:
            return inputs, scores
        return self.augments[index](inputs, scores)
