"""Zero-shot head: image projection, L2 normalisation, class-embedding logits (CLIP's
softmax scoring, or SigLIP's sigmoid scoring with a learned bias)."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from mmclip.registry import MODELS
from mmclip.structures import DataSample

from ..utils.adapt_on_load import adapt_on_load
from ..utils.zero_shot import prompt_digest, resolve_prompts
from .vision_transformer_head import predictions_from_scores, scores_from_logits

Prompts = Union[str, Sequence[str]]


@MODELS.register_module()
class ZeroShotClsHead(BaseModule):
    """``logit_scale.exp() * normalize(x @ proj) @ class_embeddings.T (+ logit_bias)``.

    Config keys:
        in_channels: C, the image tower's width (its class token after ``ln_post``).
        out_channels: D, the joint image-text embedding size.
        classes: class names, or ``'imagenet'`` (the 1000 curated ImageNet names).
        templates: prompt templates with one ``{}``, or ``'openai_imagenet'`` (OpenAI's 80).
        with_proj: project the image feature with ``proj`` (CLIP). SigLIP's pooled feature
            is the embedding itself (open_clip's ``timm_proj='none'``): no ``proj``, and
            ``in_channels`` must equal ``out_channels``.
        logit_bias: None (CLIP: softmax over the classes), or the initial value of the
            learned ``logit_bias`` (SigLIP: -10). With a bias, each class is scored on its
            own, ``pred_score = sigmoid(logit)``, as SigLIP was trained (its sigmoid loss);
            the ranking, so top-1 / top-5, is the same either way.
        init_cfg: mmengine init config.

    Keys: ``proj`` [C, D] (open_clip's ``visual.proj``; absent without ``with_proj``),
    ``logit_scale`` [] (the CLIP model's; logits are scaled by its exp), ``logit_bias`` []
    (SigLIP's; added to the logits), and the head the classifier builds (``BUILT_KEYS``):
    ``class_embeddings`` [K, D] and ``prompt_digest`` [32] (uint8, the digest of the prompts
    they were built from, ``zero_shot.prompt_digest``; zeros: built from none). Both are
    saved with the model; the ``ZeroShotClassifier`` builds them from its text tower and the
    prompts (cached) when a checkpoint has none (an open_clip file) or has them for other
    prompts.
    Input: the backbone's tuple of features, the last [B, C]; ``forward`` -> logits [B, K].
    """

    BUILT_KEYS = ('class_embeddings', 'prompt_digest')

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 classes: Prompts = 'imagenet',
                 templates: Prompts = 'openai_imagenet',
                 with_proj: bool = True,
                 logit_bias: Optional[float] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not with_proj and in_channels != out_channels:
            raise ValueError(f'with_proj=False needs in_channels == out_channels (the pooled '
                             f'feature is the embedding); got {in_channels} and {out_channels}.')
        self.classes, self.templates = resolve_prompts(classes, templates)
        self.num_classes = len(self.classes)
        # open_clip's initialisation (random towers; real ones are loaded).
        self.proj = nn.Parameter(torch.randn(in_channels, out_channels) *
                                 in_channels**-0.5) if with_proj else None
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        self.logit_bias = None if logit_bias is None else nn.Parameter(
            torch.tensor(float(logit_bias)))
        self.register_buffer('class_embeddings', torch.zeros(self.num_classes, out_channels))
        self.register_buffer('prompt_digest', torch.zeros(32, dtype=torch.uint8))
        adapt_on_load(self)

    # ---- prompts and the class embeddings built from them ------------------------------
    def set_prompts(self, classes: Prompts, templates: Optional[Prompts] = None) -> None:
        """Classify into ``classes`` with ``templates`` (None: the current ones), both
        checked (``resolve_prompts``). The class embeddings were built for other prompts
        until ``set_class_embeddings`` (``ZeroShotClassifier.build_head``)."""
        self.classes, self.templates = resolve_prompts(
            classes, self.templates if templates is None else templates)
        self.num_classes = len(self.classes)

    def set_class_embeddings(self, embeddings: torch.Tensor) -> None:
        """Hold ``embeddings`` [K, D], built from the current prompts (the digest says so)."""
        device = self.logit_scale.device
        self.class_embeddings = embeddings.to(device=device, dtype=self.logit_scale.dtype)
        self.prompt_digest = prompt_digest(self.classes, self.templates).to(device)

    def forget_class_embeddings(self) -> None:
        """Mark the class embeddings as built from no prompts (a zero digest), because the
        towers changed: a checkpoint saved now rebuilds them when it is loaded."""
        self.prompt_digest.zero_()

    def built_for_prompts(self) -> bool:
        """Whether the class embeddings were built from the current prompts."""
        return torch.equal(self.prompt_digest.cpu(), prompt_digest(self.classes, self.templates))

    # ---- loading weights ---------------------------------------------------------------
    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str = '',
                         name: str = 'the checkpoint',
                         logger: Union[str, logging.Logger] = 'current') -> None:
        """Give a checkpoint without a built head (an open_clip file), or with one for
        another number of classes, this head's tensors with a zero digest: the classifier
        then builds the head from its prompts. Run by ``load_state_dict`` (a load pre-hook)
        and by mmclip's loader before its checks."""
        embeddings = state_dict.get(prefix + 'class_embeddings')
        if (embeddings is not None and prefix + 'prompt_digest' in state_dict
                and embeddings.shape == self.class_embeddings.shape):
            return
        state_dict[prefix + 'class_embeddings'] = self.class_embeddings.detach().clone()
        state_dict[prefix + 'prompt_digest'] = torch.zeros_like(self.prompt_digest)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The L2-normalised image embedding [B, D]."""
        x = feats[-1]
        if x.ndim != 2:
            raise ValueError(f'ZeroShotClsHead needs a [B, C] class-token feature (backbone '
                             f"out_type='cls_token'); got shape {tuple(x.shape)}.")
        return F.normalize(x if self.proj is None else x @ self.proj, dim=-1)

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.pre_logits(feats)
        logits = self.logit_scale.exp() * x @ self.class_embeddings.to(x.dtype).T
        return logits if self.logit_bias is None else logits + self.logit_bias

    def loss(self, feats, data_samples) -> dict:
        raise ValueError('ZeroShotClsHead is not trained: its classes come from text prompts. '
                         'To fine-tune, use a linear-probe or fine-tune config.')

    def predict(self,
                feats: Tuple[torch.Tensor, ...],
                data_samples: Optional[Sequence[Optional[DataSample]]] = None
                ) -> List[DataSample]:
        return predictions_from_scores(self.scores(self(feats)), data_samples)

    @property
    def score_function(self) -> str:
        """'softmax' or 'sigmoid': what ``scores`` applies (an export records it)."""
        return 'softmax' if self.logit_bias is None else 'sigmoid'

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] -> float32 scores: softmax over the classes (CLIP), or each class's
        sigmoid when the head has a ``logit_bias`` (SigLIP, trained with a sigmoid loss)."""
        return scores_from_logits(logits, self.score_function)
