"""FLYP: fine-tune CLIP like it was pre-trained (Goyal et al., arXiv:2212.00638)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.dist import get_rank

from mmclip.registry import MODELS
from mmclip.structures import DataSample

from ..losses import clip_contrastive_loss, gather_across_ranks
from ..utils.adapt_on_load import adapt_on_load
from ..utils.zero_shot import build_class_embeddings, resolve_prompts
from .zero_shot_classifier import ZeroShotClassifier


@MODELS.register_module()
class FLYPClassifier(ZeroShotClassifier):
    """A ``ZeroShotClassifier`` trained with CLIP's contrastive loss, both towers and the
    logit scale learning.

    In ``mode='loss'`` each image of the batch is paired with a prompt of its class,
    ``template.format(classes[label])``, the template drawn uniformly from
    ``train_templates`` (FLYP pairs every training image with every template and samples
    the pairs; locuslab/FLYP ``datacreation_scripts/imagenet_csv_creator.py``), and the
    loss is ``clip_contrastive_loss`` between the L2-normalised image and text embeddings
    with ``exp(logit_scale)``: open_clip's ``ClipLoss`` as FLYP's ``src/models/flyp_loss.py``
    calls it, the other pairs of the whole batch being the negatives (across all ranks of a
    distributed run: ``gather_across_ranks``). Gradients reach the image tower, the
    projection, the text tower and the logit scale. Predictions are
    zero-shot classification with the current towers: the class embeddings are rebuilt
    (without the cache, whose files would pile up one per evaluation) before the first
    forward after a training step; a checkpoint saved between a training step and the next
    evaluation holds stale embeddings and a zero ``prompt_digest``, so loading it rebuilds
    them.

    Config keys: those of ``ZeroShotClassifier``, plus
        train_templates: templates the training prompts are drawn from (default: the
            head's ``templates``).

    The template draws come from a generator seeded with ``flyp_step`` (a counter saved
    with the model) and the rank, so a resumed run draws what an uninterrupted one would.
    """

    derived_state_keys = ZeroShotClassifier.derived_state_keys + ('flyp_step', )

    def __init__(self,
                 backbone: dict,
                 text_backbone: dict,
                 head: dict,
                 train_templates: Union[str, Sequence[str], None] = None,
                 tokenizer: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, text_backbone, head, tokenizer=tokenizer,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.train_templates = (resolve_prompts(self.head.classes, train_templates)[1]
                                if train_templates is not None else None)
        self.register_buffer('flyp_step', torch.zeros((), dtype=torch.long))
        adapt_on_load(self)

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str = '',
                         *args) -> None:
        """A checkpoint that was not trained with FLYP (a zero-shot tower) starts at step 0.
        Run by ``load_state_dict`` (a load pre-hook) and by mmclip's loader."""
        state_dict.setdefault(prefix + 'flyp_step', torch.zeros_like(self.flyp_step))

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def training_prompts(self, labels: torch.Tensor) -> List[str]:
        """One prompt per label, its template drawn with the generator of this step."""
        templates = self.train_templates or self.head.templates
        # Each rank its own draws (its own images), each step new ones.
        generator = torch.Generator().manual_seed(int(self.flyp_step) * 65537 + get_rank())
        picks = torch.randint(len(templates), (len(labels), ), generator=generator)
        classes = self.head.classes
        return [templates[int(t)].format(classes[int(y)]) for t, y in zip(picks, labels)]

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        if 'gt_score' in data_samples[0]:
            raise ValueError('FLYPClassifier pairs each image with a prompt of its one class; '
                             'remove Mixup / CutMix (data_preprocessor.batch_augments).')
        labels = torch.cat([s.gt_label for s in data_samples]).cpu()
        if int(labels.max()) >= len(self.head.classes):
            raise ValueError(f'Label {int(labels.max())} has no class name: the head has '
                             f'{len(self.head.classes)} classes (model.head.classes).')
        tokens = self.tokenizer(self.training_prompts(labels)).to(inputs.device)
        image = self.encode_image(inputs)
        text = F.normalize(self.text_backbone(tokens), dim=-1)
        self.flyp_step += 1
        # The towers are about to change: the class embeddings no longer belong to them.
        # A zero digest makes a checkpoint saved before the next evaluation (mmengine saves
        # an epoch's checkpoint before validating) rebuild them when loaded.
        self._head_ready = False
        self.head.forget_class_embeddings()
        loss = clip_contrastive_loss(gather_across_ranks(image), gather_across_ranks(text),
                                     self.head.logit_scale.exp())
        return dict(loss=loss)

    def compute_class_embeddings(self) -> torch.Tensor:
        return build_class_embeddings(self.text_backbone, self.head.classes,
                                      self.head.templates)
