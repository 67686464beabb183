"""A trainable classifier initialised from a zero-shot CLIP model (WiSE-FT's start).

The zero-shot model computes ``exp(logit_scale) * normalize(x @ proj) @ E.T`` with the
class text embeddings ``E`` [K, D]. Folding the scale into the rows gives an ordinary
linear layer, ``CLIPLinearClsHead`` with weight ``exp(logit_scale) * E`` and bias 0, whose
logits are the zero-shot model's; fine-tuning then starts from the zero-shot classifier
instead of a random head, which is what keeps the fine-tuned model close to (and
interpolable with) the zero-shot one (Wortsman et al., "Robust fine-tuning of zero-shot
models", arXiv:2109.01903; github.com/mlfoundations/wise-ft ``src/models/zeroshot.py``).
"""
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.config import ConfigDict

from .zero_shot_classifier import ZeroShotClassifier

Prompts = Union[str, Sequence[str]]


def zero_shot_init_state_dict(model: ZeroShotClassifier) -> Dict[str, torch.Tensor]:
    """The state dict of an ``ImageClassifier`` with a ``CLIPLinearClsHead`` whose logits
    equal ``model``'s: the image tower, the projection, and the scaled class embeddings
    as the head's weight (bias 0). The text tower is left out. The head is built first
    if the model's weights or classes changed since."""
    if not model.head_built:
        model.build_head()
    head = model.head
    state = {k: v.detach().clone() for k, v in model.backbone.state_dict(prefix='backbone.')
             .items()}
    with torch.no_grad():
        weight = head.logit_scale.exp() * head.class_embeddings.to(head.proj.dtype)
    state.update({
        'head.proj': head.proj.detach().clone(),
        'head.layers.head.weight': weight,
        'head.layers.head.bias': weight.new_zeros(weight.shape[0]),
    })
    return state


def zero_shot_model_config(classifier: Union[dict, ConfigDict], text_backbone: dict,
                           classes: Prompts, templates: Prompts) -> dict:
    """The ``ZeroShotClassifier`` config whose image tower is ``classifier``'s (an
    ``ImageClassifier`` config with a ``CLIPLinearClsHead``) and whose text tower is
    ``text_backbone``, classifying into ``classes`` with ``templates``."""
    head = classifier['head']
    missing = [k for k in ('in_channels', 'out_channels') if k not in head]
    if missing or head.get('type') != 'CLIPLinearClsHead':
        raise ValueError(f"A zero-shot initialisation needs model.head of type "
                         f"'CLIPLinearClsHead' with in_channels and out_channels; got "
                         f"{dict(head)!r}.")
    return dict(
        type='ZeroShotClassifier',
        backbone=dict(classifier['backbone']),
        text_backbone=dict(text_backbone),
        head=dict(type='ZeroShotClsHead', in_channels=head['in_channels'],
                  out_channels=head['out_channels'], classes=classes, templates=templates))


def check_class_count(num_classes: int, classes: Sequence[str], where: str,
                      source: Optional[str] = None) -> None:
    """Refuse a zero-shot head of another class count than the classifier's."""
    if len(classes) != num_classes:
        origin = f' ({source})' if source else ''
        raise ValueError(f'{where}: {len(classes)} class names{origin} for a head with '
                         f'num_classes={num_classes}; give one name per class, in label order.')
