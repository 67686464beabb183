"""CLIP zero-shot classification as an ordinary mmclip classifier."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from mmclip.registry import MODELS
from mmclip.structures import DataSample

from ..heads import ZeroShotClsHead
from ..utils.tokenizer import build_tokenizer
from ..utils.zero_shot import cached_class_embeddings
from .image_classifier import ImageClassifier


@MODELS.register_module()
class ZeroShotClassifier(ImageClassifier):
    """Image tower -> normalised embedding -> logits against class-name prompts.

    Config keys:
        backbone: the image tower (``VisionTransformer``, ``out_type='cls_token'``).
        text_backbone: the text tower (``CLIPTextTransformer``).
        head: ``ZeroShotClsHead`` (image projection, logit scale, classes, templates).
        tokenizer: the text tower's tokenizer (``build_tokenizer``): None for CLIP's BPE,
            ``dict(type='HFTokenizer', name=..., context_length=..., clean=...)`` for
            SigLIP's. Its files are read when prompts are first tokenized.
        data_preprocessor / init_cfg: as for ``ImageClassifier``.

    The head's class embeddings are built from the text tower and the prompts before the
    first forward after the weights or the classes change (from the cache when they were
    built before, see ``mmclip.models.utils.zero_shot``), so ``tools/test.py`` and the
    inferencer use it as any classifier. They are saved with the model, with the digest of
    the prompts they were built from: a checkpoint that holds a head built for the model's
    classes and templates loads it as it is; without one (an open_clip file), or with one
    for other prompts, the head is built (``ZeroShotClsHead.adapt_state_dict``).
    ``encode_image`` / ``encode_text`` give the L2-normalised embeddings for retrieval.
    """

    # Tensors the model makes itself, so a checkpoint may lack them: the head it builds.
    derived_state_keys = tuple(f'head.{key}' for key in ZeroShotClsHead.BUILT_KEYS)

    def __init__(self,
                 backbone: dict,
                 text_backbone: dict,
                 head: dict,
                 tokenizer: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, head, data_preprocessor, init_cfg)
        self.text_backbone = MODELS.build(text_backbone)
        self.tokenizer = build_tokenizer(tokenizer)
        self._head_ready = False
        self.register_load_state_dict_post_hook(ZeroShotClassifier._weights_changed)

    @staticmethod
    def _weights_changed(module: 'ZeroShotClassifier', incompatible_keys) -> None:
        # A loaded head belongs to the loaded towers, and counts if it was built for this
        # model's prompts; otherwise it is rebuilt before the next forward.
        module._head_ready = module.head.built_for_prompts()

    @property
    def head_built(self) -> bool:
        """Whether the class embeddings fit the current weights and prompts."""
        return self._head_ready

    @property
    def classes(self) -> tuple:
        return self.head.classes

    def set_classes(self, classes: Union[str, Sequence[str]],
                    templates: Union[str, Sequence[str], None] = None) -> None:
        """Classify into ``classes`` (templates: the head's current ones if None); the
        head keeps them (``ZeroShotClsHead.set_prompts``) and is rebuilt before the next
        forward."""
        self.head.set_prompts(classes, templates)
        self._head_ready = False

    @torch.no_grad()
    def build_head(self) -> None:
        """Fill the head's class embeddings [K, D] from the prompts (fp32, no autocast)."""
        with torch.autocast(self.head.logit_scale.device.type, enabled=False):
            self.head.set_class_embeddings(self.compute_class_embeddings())
        self._head_ready = True

    def compute_class_embeddings(self) -> torch.Tensor:
        """The head's class embeddings [K, D] from the text tower and the prompts, read from
        the cache when they were built before with these weights."""
        return cached_class_embeddings(self.text_backbone, self.head.classes,
                                       self.head.templates, self.tokenizer)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if not self._head_ready:
            self.build_head()
        return super().forward(inputs, data_samples, mode)

    def encode_image(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] (after the data preprocessor) -> embeddings
        [B, D], L2-normalised (open_clip's ``encode_image(normalize=True)``)."""
        return self.head.pre_logits(self.extract_feat(inputs))

    def encode_text(self, texts: Union[Sequence[str], torch.Tensor]) -> torch.Tensor:
        """Texts, or token ids [N, L] (L: the context length, 77 for CLIP) -> embeddings
        [N, D], L2-normalised (open_clip's ``encode_text(normalize=True)``)."""
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenizer(texts)
        device = self.head.logit_scale.device
        return F.normalize(self.text_backbone(tokens.to(device)), dim=-1)
