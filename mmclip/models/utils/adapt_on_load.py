"""Modules that adapt the weights they are given before they are loaded.

A module with ``adapt_state_dict(state_dict, prefix, name='the checkpoint', logger=...)``
(e.g. the ViT resampling a position embedding of another patch grid, the zero-shot head
filling in the class embeddings it builds itself) edits ``state_dict`` in place. mmclip's
loader calls it before its checks; ``adapt_on_load`` makes torch's and mmengine's
``load_state_dict`` call it too.
"""
from typing import Dict

import torch
from torch import nn


def _adapt(module: nn.Module, state_dict: Dict[str, torch.Tensor], prefix: str, *args) -> None:
    module.adapt_state_dict(state_dict, prefix)


def adapt_on_load(module: nn.Module) -> None:
    """Run ``module.adapt_state_dict`` before each ``load_state_dict`` (a load pre-hook)."""
    module.register_load_state_dict_pre_hook(_adapt)
