"""Classification and retrieval numbers computed as clip_benchmark computes them.

clip_benchmark (LAION-AI/CLIP_benchmark, ``metrics/zeroshot_classification.py`` and
``metrics/zeroshot_retrieval.py``, 1.6.2) produces the zero-shot and retrieval numbers
open_clip publishes; these functions repeat its arithmetic so that the same logits or
embeddings give the same values to the last bit (tests/test_eval_suite.py compares them
with clip_benchmark's own ``evaluate`` functions). Values are fractions in [0, 1], as
clip_benchmark reports them, not percentages.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch


def project_scores(scores: torch.Tensor, class_map: Optional[Sequence[Sequence[int]]],
                   num_classes: Optional[int]) -> torch.Tensor:
    """Scores [..., K] of a model -> scores [..., C] over a dataset's C classes.

    ``class_map[c]`` lists the model outputs that stand for dataset class ``c``; their
    maximum scores it (ImageNet-R/-A map one output each, ObjectNet up to three). Scores
    are returned unchanged when the model already has one output per dataset class
    (``K == num_classes``, e.g. a zero-shot head built for them) or there is no map.

    Raises:
        ValueError: if ``class_map`` names an output the model does not have.
    """
    if not class_map or scores.shape[-1] == num_classes:
        return scores
    width = max(len(outputs) for outputs in class_map)
    # Pad each list with its own first entry: the maximum is unchanged.
    index = torch.tensor([list(o) + [o[0]] * (width - len(o)) for o in class_map],
                         device=scores.device)
    if int(index.max()) >= scores.shape[-1]:
        raise ValueError(f'The model has {scores.shape[-1]} outputs, but the dataset maps '
                         f'its {len(class_map)} classes to outputs up to {int(index.max())}; '
                         'evaluate a 1000-class ImageNet model, or one with a head for the '
                         "dataset's own classes.")
    return scores[..., index].amax(dim=-1)


def mean_per_class_recall(target: np.ndarray, pred: np.ndarray) -> float:
    """The mean, over the classes that have images, of the fraction of each class's
    images predicted as it: scikit-learn's ``balanced_accuracy_score``, which
    clip_benchmark reports as ``mean_per_class_recall`` (same order of summation)."""
    target, pred = np.asarray(target), np.asarray(pred)
    classes = np.unique(target)
    correct = np.array([np.sum((target == c) & (pred == c)) for c in classes])
    totals = np.array([np.sum(target == c) for c in classes])
    return float(np.mean(correct / totals))


def classification_metrics(logits: torch.Tensor, target: torch.Tensor) -> Dict[str, float]:
    """Logits [N, C] and labels [N] -> ``acc1``, ``acc5``, ``mean_per_class_recall``.

    ``acc5`` is NaN with fewer than 5 classes, as clip_benchmark reports it.
    """
    num_classes = logits.shape[1]
    ks = (1, 5) if num_classes >= 5 else (1, )
    ranked = logits.topk(max(ks), dim=1).indices
    hits = ranked == target[:, None]
    acc = {k: float(hits[:, :k].any(dim=1).sum()) / len(target) for k in ks}
    return dict(acc1=acc[1], acc5=acc.get(5, float('nan')),
                mean_per_class_recall=mean_per_class_recall(
                    target.numpy(), logits.argmax(dim=1).numpy()))


def retrieval_metrics(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                      text_to_image: torch.Tensor,
                      ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """Recall@k both ways from L2-normalised embeddings.

    ``image_retrieval_recall@k``: the fraction of texts whose image is among the k
    images most similar to it; ``text_retrieval_recall@k``: the fraction of images with
    at least one of their texts among the k texts most similar to them (the CLIP papers'
    definition). ``text_to_image[t]`` is the image index of text ``t``. Averaged in
    float32, as clip_benchmark does; k is capped at the number of candidates.
    """
    scores = text_embeddings @ image_embeddings.T  # [texts, images]
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), text_to_image] = True
    metrics = {}
    for k in ks:
        metrics[f'image_retrieval_recall@{k}'] = _recall_at_k(scores, positive, k)
        metrics[f'text_retrieval_recall@{k}'] = _recall_at_k(scores.T, positive.T, k)
    return metrics


def _recall_at_k(scores: torch.Tensor, positive: torch.Tensor, k: int) -> float:
    """Fraction of rows with a positive column among their k highest scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return positive.gather(1, top).any(dim=1).float().mean().item()
