"""CLIP's zero-shot head made an ordinary, trainable linear head (WiSE-FT's classifier)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmclip.registry import MODELS

from .vision_transformer_head import VisionTransformerClsHead


@MODELS.register_module()
class CLIPLinearClsHead(VisionTransformerClsHead):
    """``Linear(D, K)(normalize(x @ proj))``: the image projection and L2 normalisation of
    a CLIP image tower, then a linear classifier.

    Initialised from a zero-shot model (``mmclip.models.zero_shot_init``), the Linear's
    weight is ``exp(logit_scale) * class_embeddings`` [K, D] and its bias 0, so the logits
    equal the zero-shot model's; from there it trains as any head. This is the
    ``ClassificationHead(normalize=True, weights=logit_scale.exp() * zeroshot_weights)``
    of WiSE-FT (github.com/mlfoundations/wise-ft, ``src/models/zeroshot.py``), whose
    projection belongs to the image encoder and is fine-tuned with it.

    Config keys:
        num_classes: K.
        in_channels: C, the image tower's width (its class token after ``ln1``).
        out_channels: D, the joint image-text embedding size (open_clip's ``visual.proj``).
        freeze_proj: keep ``proj`` fixed (no grad), for a linear probe on the embeddings.
        loss / init_cfg: as for ``VisionTransformerClsHead``.

    Keys: ``proj`` [C, D] (as ``ZeroShotClsHead``'s), ``layers.head.weight`` [K, D],
    ``layers.head.bias`` [K].
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 out_channels: int,
                 freeze_proj: bool = False,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear', std=0.02)
                 ) -> None:
        super().__init__(num_classes, out_channels, loss=loss, init_cfg=init_cfg)
        self.in_channels, self.out_channels = in_channels, out_channels
        # open_clip's initialisation (real weights come from a zero-shot model).
        self.proj = nn.Parameter(torch.randn(in_channels, out_channels) * in_channels**-0.5,
                                 requires_grad=not freeze_proj)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The L2-normalised image embedding [B, D]."""
        x = feats[-1]
        if x.ndim != 2:
            raise ValueError(f'CLIPLinearClsHead needs a [B, C] class-token feature (backbone '
                             f"out_type='cls_token'); got shape {tuple(x.shape)}.")
        return F.normalize(x @ self.proj, dim=-1)
