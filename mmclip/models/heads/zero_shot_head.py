"""CLIP zero-shot head: image projection, L2 normalisation, class-embedding logits."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from mmclip.registry import MODELS
from mmclip.structures import DataSample

from ..utils.zero_shot import prompt_digest, resolve_prompts
from .vision_transformer_head import predictions_from_logits

Prompts = Union[str, Sequence[str]]


@MODELS.register_module()
class ZeroShotClsHead(BaseModule):
    """``logit_scale.exp() * normalize(x @ proj) @ class_embeddings.T``.

    Config keys:
        in_channels: C, the image tower's width (its class token after ``ln_post``).
        out_channels: D, the joint image-text embedding size.
        classes: class names, or ``'imagenet'`` (the 1000 curated ImageNet names).
        templates: prompt templates with one ``{}``, or ``'openai_imagenet'`` (OpenAI's 80).
        init_cfg: mmengine init config.

    Keys: ``proj`` [C, D] (open_clip's ``visual.proj``), ``logit_scale`` [] (the CLIP
    model's; logits are scaled by its exp), ``class_embeddings`` [K, D], the built head, and
    ``prompt_digest`` [32] (uint8, what it was built from: ``zero_shot.prompt_digest``).
    The built head is saved with the model; the ``ZeroShotClassifier`` builds it from its
    text tower and the prompts (cached) when a checkpoint has none (an open_clip file) or
    one for other prompts.
    Input: the backbone's tuple of features, the last [B, C]; ``forward`` -> logits [B, K].
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 classes: Prompts = 'imagenet',
                 templates: Prompts = 'openai_imagenet',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.classes, self.templates = resolve_prompts(classes, templates)
        self.num_classes = len(self.classes)
        # open_clip's initialisation (random towers; real ones are loaded).
        self.proj = nn.Parameter(torch.randn(in_channels, out_channels) * in_channels**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        self.register_buffer('class_embeddings', torch.zeros(self.num_classes, out_channels))
        self.register_buffer('prompt_digest', prompt_digest(self.classes, self.templates))

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The L2-normalised image embedding [B, D]."""
        x = feats[-1]
        if x.ndim != 2:
            raise ValueError(f'ZeroShotClsHead needs a [B, C] class-token feature (backbone '
                             f"out_type='cls_token'); got shape {tuple(x.shape)}.")
        return F.normalize(x @ self.proj, dim=-1)

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.pre_logits(feats)
        return self.logit_scale.exp() * x @ self.class_embeddings.to(x.dtype).T

    def loss(self, feats, data_samples) -> dict:
        raise ValueError('ZeroShotClsHead is not trained: its classes come from text prompts. '
                         'To fine-tune, use a linear-probe or fine-tune config.')

    def predict(self,
                feats: Tuple[torch.Tensor, ...],
                data_samples: Optional[Sequence[Optional[DataSample]]] = None
                ) -> List[DataSample]:
        return predictions_from_logits(self(feats), data_samples)
