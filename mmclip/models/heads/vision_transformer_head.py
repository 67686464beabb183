"""Linear classification head on the ViT class token."""
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch import nn

from mmclip.registry import MODELS
from mmclip.structures import DataSample


@MODELS.register_module()
class VisionTransformerClsHead(BaseModule):
    """``Linear(in_channels, num_classes)`` on the last backbone feature.

    Config keys:
        num_classes: K.
        in_channels: C of the class-token feature.
        hidden_dim: if set, a ``pre_logits`` Linear(C, hidden_dim) + ``act`` (tanh) comes
            first, as in the original ViT; CLIP fine-tunes use none.
        loss: loss config (``CrossEntropyLoss`` by default).
        init_cfg: mmengine init config.

    Input: the backbone's tuple of features; the last one, [B, C], is used.
    ``forward`` returns logits [B, K]. Keys: ``layers.head.weight`` [K, C] (and
    ``layers.pre_logits.*`` with ``hidden_dim``).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 hidden_dim: Optional[int] = None,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear', std=0.02)
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive; got {num_classes}.')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.hidden_dim = hidden_dim
        self.loss_module = MODELS.build(loss) if isinstance(loss, dict) else loss
        if hidden_dim is None:
            layers = [('head', nn.Linear(in_channels, num_classes))]
        else:
            layers = [('pre_logits', nn.Linear(in_channels, hidden_dim)), ('act', nn.Tanh()),
                      ('head', nn.Linear(hidden_dim, num_classes))]
        self.layers = nn.Sequential(OrderedDict(layers))

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The feature the final Linear sees: [B, C] (or [B, hidden_dim])."""
        x = feats[-1]
        if x.ndim != 2:
            raise ValueError(f'VisionTransformerClsHead needs a [B, C] class-token feature '
                             f"(backbone out_type='cls_token'); got shape {tuple(x.shape)}.")
        if self.hidden_dim is None:
            return x
        return self.layers.act(self.layers.pre_logits(x))

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.layers.head(self.pre_logits(feats))

    def loss(self, feats: Tuple[torch.Tensor, ...], data_samples: List[DataSample]) -> dict:
        cls_score = self(feats)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        return dict(loss=self.loss_module(cls_score, target.to(cls_score.device)))

    def predict(self,
                feats: Tuple[torch.Tensor, ...],
                data_samples: Optional[Sequence[Optional[DataSample]]] = None
                ) -> List[DataSample]:
        return predictions_from_logits(self(feats), data_samples)


SCORE_FUNCTIONS = ('softmax', 'sigmoid')


def scores_from_logits(logits: torch.Tensor, score_function: str = 'softmax') -> torch.Tensor:
    """Logits [B, K] -> float32 scores: softmax over the classes, or each class's
    sigmoid (SigLIP's zero-shot heads, trained with a sigmoid loss; exported models that
    record it)."""
    if score_function == 'sigmoid':
        return torch.sigmoid(logits.float())
    return torch.softmax(logits.float(), dim=1)


def predictions_from_logits(cls_score: torch.Tensor,
                            data_samples: Optional[Sequence[Optional[DataSample]]] = None
                            ) -> List[DataSample]:
    """Softmax logits [B, K] into ``pred_score`` / ``pred_label`` of each DataSample."""
    return predictions_from_scores(scores_from_logits(cls_score), data_samples)


def predictions_from_scores(pred_scores: torch.Tensor,
                            data_samples: Optional[Sequence[Optional[DataSample]]] = None
                            ) -> List[DataSample]:
    """Scores [B, K] (probabilities) into ``pred_score`` / ``pred_label`` of each
    DataSample; the label is the highest score."""
    pred_labels = pred_scores.argmax(dim=1, keepdim=True)
    if data_samples is None:
        data_samples = [None] * pred_scores.shape[0]
    out = []
    for sample, score, label in zip(data_samples, pred_scores, pred_labels):
        sample = DataSample() if sample is None else sample
        out.append(sample.set_pred_score(score).set_pred_label(label))
    return out
