"""Start fine-tuning from a zero-shot CLIP classifier, unless the run resumes."""
from typing import Mapping, Optional, Sequence, Union

from mmengine.model import is_model_wrapper

from mmclip.checkpoint import load_checkpoint
from mmclip.checkpoint.loader import load_state_dict_into
from mmclip.models.classifiers.zero_shot_init import (
    check_class_count,
    zero_shot_init_state_dict,
    zero_shot_model_config,
)
from mmclip.registry import HOOKS, MODELS

from .load_pretrained_hook import LoadPretrainedHook


@HOOKS.register_module()
class ZeroShotInitHook(LoadPretrainedHook):
    """Initialise an ``ImageClassifier`` with a ``CLIPLinearClsHead`` from CLIP's two towers.

    Config (in ``custom_hooks``)::

        dict(type='ZeroShotInitHook', checkpoint='.../open_clip_model.safetensors',
             text_backbone=dict(type='CLIPTextTransformer', arch='b', out_channels=512),
             classes='imagenet', templates='openai_imagenet')

    Before the first iteration of a fresh run, a ``ZeroShotClassifier`` is built with the
    model's image tower (``model.backbone``, the head's ``in_channels`` /
    ``out_channels``) and ``text_backbone``, ``checkpoint`` (an open_clip file or an
    mmclip zero-shot checkpoint: both towers) is loaded into it strictly, its head is
    built from the prompts (from the zero-shot head cache when built before), and the
    classifier receives the image tower, the projection and ``exp(logit_scale) * class
    embeddings`` as its head (``zero_shot_init_state_dict``): its logits are the zero-shot
    model's. The text tower is then freed. Like ``LoadPretrainedHook``, it is skipped when
    the run resumed or loaded a checkpoint.

    Config keys:
        checkpoint: path or URL (or several, tried in order) of both CLIP towers.
        text_backbone: the ``CLIPTextTransformer`` config of those weights.
        classes: class names in label order, ``'imagenet'``, or None: the training set's
            class names (``metainfo['classes']``: a folder dataset's folder names).
        templates: prompt templates with one ``{}``, or ``'openai_imagenet'``.
        mirrors: as for ``LoadPretrainedHook``.
    """

    def __init__(self,
                 checkpoint: Union[str, Sequence[str]],
                 text_backbone: dict,
                 classes: Union[str, Sequence[str], None] = None,
                 templates: Union[str, Sequence[str]] = 'openai_imagenet',
                 mirrors: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(checkpoint, drop_mismatched_head=False, mirrors=mirrors)
        self.text_backbone = dict(text_backbone)
        self.classes, self.templates = classes, templates

    def load(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        classes = self.classes
        if classes is None:
            classes = runner.train_dataloader.dataset.metainfo.get('classes')
            if not classes:
                raise ValueError('ZeroShotInitHook: classes=None takes the training set\'s '
                                 'class names, and it has none; set classes=[...].')
        zero_shot = MODELS.build(zero_shot_model_config(runner.cfg.model, self.text_backbone,
                                                        classes, self.templates))
        device = next(model.parameters()).device
        zero_shot.to(device).eval()
        check_class_count(model.head.num_classes, zero_shot.classes, 'ZeroShotInitHook',
                          None if self.classes else 'the training set\'s')
        load_checkpoint(zero_shot, self.checkpoint, strict=True, logger=runner.logger,
                        mirrors=self.mirrors)
        state = zero_shot_init_state_dict(zero_shot)
        num_templates = len(zero_shot.head.templates)
        del zero_shot
        load_state_dict_into(model, state, f'the zero-shot model of {self.checkpoint}',
                             strict=True, logger=runner.logger)
        runner.logger.info(f'ZeroShotInitHook: initialised the classifier from the zero-shot '
                           f'model of {self.checkpoint} ({len(state)} tensors; head: '
                           f'{model.head.num_classes} classes x {num_templates} templates).')
