"""Layer-wise learning-rate decay for fine-tuning a ViT, with no decay on 1-D params.

Fine-tuning a pre-trained ViT moves the early layers less than the late ones: the
embeddings keep general features, the head learns the new task (BEiT, FT-CLIP). Each
parameter gets a layer id, and its learning rate is scaled by
``decay_rate ** (num_layers + 1 - layer_id)``:

    layer id 0                  backbone.cls_token, pos_embed, patch_embed.*, pre_norm.*
    layer id i + 1              backbone.layers.i.*
    layer id num_layers + 1     backbone.ln1.* (final norm), head.*  (scale 1)
"""
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmclip.registry import OPTIM_WRAPPER_CONSTRUCTORS

EMBEDDING_NAMES = ('cls_token', 'pos_embed', 'patch_embed', 'pre_norm')


def get_layer_id_for_vit(param_name: str, num_layers: int) -> int:
    """Layer id of a classifier parameter name such as ``backbone.layers.3.attn.qkv.weight``."""
    if param_name.startswith('backbone.'):
        name = param_name[len('backbone.'):]
        if name.split('.')[0] in EMBEDDING_NAMES:
            return 0
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1
    return num_layers + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LearningRateDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with layer-wise LR decay for ``ImageClassifier`` + ViT.

    Config keys (in ``optim_wrapper``):
        optimizer: e.g. ``dict(type='AdamW', lr=..., weight_decay=0.05)``.
        constructor: ``'LearningRateDecayOptimWrapperConstructor'``.
        paramwise_cfg:
            layer_decay_rate (float, required): in (0, 1]; 1 disables the decay.
            no_decay_names (sequence of str): parameter names (last component) that get
                no weight decay, in addition to every 1-D parameter (norms and biases).
                Default ``('cls_token', 'pos_embed')``.

    Each parameter group carries ``lr``, ``weight_decay``, ``lr_scale``, ``layer_id`` and
    ``param_names``; parameters with ``requires_grad=False`` (frozen stages) are left out.
    mmengine's parameter schedulers scale every group's own initial ``lr``, so the decay
    survives warm-up and cosine annealing.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate, self.no_decay_names = self._parse_paramwise_cfg()

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        if is_model_wrapper(module):
            module = module.module
        decay_rate, no_decay_names = self.decay_rate, self.no_decay_names
        num_layers = self._num_layers(module)
        groups: Dict[Tuple[int, bool], dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer_id = get_layer_id_for_vit(name, num_layers)
            no_decay = param.ndim == 1 or name.split('.')[-1] in no_decay_names
            key = (layer_id, no_decay)
            if key not in groups:
                scale = decay_rate**(num_layers + 1 - layer_id)
                groups[key] = dict(
                    params=[], param_names=[], layer_id=layer_id, lr_scale=scale,
                    lr=self.base_lr * scale,
                    weight_decay=0.0 if no_decay else self.base_wd)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        # Head first: mmengine logs the first group's ``lr``, which is then the schedule's.
        params.extend(groups[key] for key in sorted(groups, reverse=True))
        print_log(f'Layer-wise LR decay {decay_rate} over {num_layers} layers: '
                  f'{len(groups)} parameter groups.', logger='current')

    def _parse_paramwise_cfg(self) -> Tuple[float, Sequence[str]]:
        cfg = dict(self.paramwise_cfg or {})
        if 'layer_decay_rate' not in cfg:
            raise ValueError('LearningRateDecayOptimWrapperConstructor needs '
                             'optim_wrapper.paramwise_cfg.layer_decay_rate (in (0, 1]).')
        decay_rate = float(cfg.pop('layer_decay_rate'))
        if not 0.0 < decay_rate <= 1.0:
            raise ValueError(f'paramwise_cfg.layer_decay_rate must be in (0, 1]; got {decay_rate}.')
        no_decay_names = tuple(cfg.pop('no_decay_names', ('cls_token', 'pos_embed')))
        if cfg:
            raise ValueError(f'Unknown paramwise_cfg keys {sorted(cfg)} for layer-wise LR decay; '
                             "valid keys: ['layer_decay_rate', 'no_decay_names'].")
        if self.base_wd is None:
            raise ValueError('Layer-wise LR decay needs optimizer.weight_decay to be set.')
        return decay_rate, no_decay_names

    @staticmethod
    def _num_layers(model: nn.Module) -> int:
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'num_layers'):
            raise ValueError('LearningRateDecayOptimWrapperConstructor needs a classifier with a '
                             f'ViT backbone (backbone.num_layers); got {type(model).__name__}.')
        return backbone.num_layers
