"""Backbone + head classifier with mmengine's three forward modes."""
from typing import List, Optional, Tuple

import torch
from mmengine.model import BaseModel

from mmclip.registry import MODELS
from mmclip.structures import DataSample


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Image classifier: ``head(backbone(x))``.

    Config keys:
        backbone: backbone config (``VisionTransformer``).
        head: head config (``VisionTransformerClsHead``); ``None`` for a feature extractor.
        data_preprocessor: ``ClsDataPreprocessor`` config (the default normalises nothing).
        init_cfg: mmengine init config.

    ``forward(inputs [B, 3, H, W], data_samples, mode)``:
        'tensor'  -> logits [B, K] (backbone features if there is no head);
        'loss'    -> dict of losses;
        'predict' -> list of DataSample with ``pred_score`` and ``pred_label``.
    """

    def __init__(self,
                 backbone: dict,
                 head: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
        super().__init__(data_preprocessor=MODELS.build(data_preprocessor), init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(head) if head is not None else None

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            feats = self.extract_feat(inputs)
            return self.head(feats) if self.head is not None else feats
        if self.head is None:
            raise ValueError(f"mode={mode!r} needs a head; this classifier has none.")
        if mode == 'loss':
            return self.head.loss(self.extract_feat(inputs), data_samples)
        if mode == 'predict':
            return self.head.predict(self.extract_feat(inputs), data_samples)
        raise ValueError(f"mode must be one of 'tensor', 'loss', 'predict'; got {mode!r}.")

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """inputs [B, 3, H, W] -> the backbone's tuple of features."""
        return self.backbone(inputs)
