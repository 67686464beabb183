"""The one table between timm's CLIP ViT keys and the published mmclip keys.

Used by the checkpoint loader (timm files are renamed on the fly) and by
``tools/model_converters/timm_to_mmclip.py``. Conversion is strict: every source key
must be consumed and every shape must match the target model, else a ``KeyError`` /
``ValueError`` lists the offenders.
"""
import re
from typing import Dict, Mapping, Optional

import torch

# (timm regex, mmclip template). Layer index \1 is carried over.
TIMM_TO_MMCLIP = (
    (r'cls_token', 'backbone.cls_token'),
    (r'pos_embed', 'backbone.pos_embed'),
    (r'patch_embed\.proj\.weight', 'backbone.patch_embed.projection.weight'),
    (r'norm_pre\.(weight|bias)', r'backbone.pre_norm.\1'),
    (r'blocks\.(\d+)\.norm1\.(weight|bias)', r'backbone.layers.\1.ln1.\2'),
    (r'blocks\.(\d+)\.attn\.qkv\.(weight|bias)', r'backbone.layers.\1.attn.qkv.\2'),
    (r'blocks\.(\d+)\.attn\.proj\.(weight|bias)', r'backbone.layers.\1.attn.proj.\2'),
    (r'blocks\.(\d+)\.norm2\.(weight|bias)', r'backbone.layers.\1.ln2.\2'),
    (r'blocks\.(\d+)\.mlp\.fc1\.(weight|bias)', r'backbone.layers.\1.ffn.layers.0.0.\2'),
    (r'blocks\.(\d+)\.mlp\.fc2\.(weight|bias)', r'backbone.layers.\1.ffn.layers.1.\2'),
    (r'norm\.(weight|bias)', r'backbone.ln1.\1'),
    (r'head\.(weight|bias)', r'head.layers.head.\1'),
)
_COMPILED = tuple((re.compile(src + r'$'), dst) for src, dst in TIMM_TO_MMCLIP)


def is_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """timm CLIP ViT checkpoints have top-level ``blocks.*`` and ``patch_embed.proj.*``."""
    return 'patch_embed.proj.weight' in state_dict and any(
        k.startswith('blocks.') for k in state_dict)


def rename_key(timm_key: str) -> Optional[str]:
    """The mmclip name of a timm key, or ``None`` if the table has no row for it."""
    for pattern, template in _COMPILED:
        if pattern.match(timm_key):
            return pattern.sub(template, timm_key)
    return None


def convert_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a timm CLIP ViT state dict (timm keys -> tensors) to mmclip keys, consuming
    every key. Shapes are checked against the model by the loader, which names the file.

    Raises:
        KeyError: listing timm keys with no row in ``TIMM_TO_MMCLIP``.
    """
    converted, unknown = {}, []
    for key, value in state_dict.items():
        new_key = rename_key(key)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    if unknown:
        raise KeyError(f'{len(unknown)} timm key(s) have no mmclip name (not a CLIP ViT '
                       f'checkpoint?): {sorted(unknown)}')
    return converted
