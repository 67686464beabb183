"""The one table between open_clip's CLIP / SigLIP state dicts and mmclip's
``ZeroShotClassifier``.

open_clip files (``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors`` on the
Hugging Face hub) hold both towers. CLIP (OpenAI's architecture: OpenAI, LAION, DFN,
MetaCLIP): ``visual.*`` (image), ``transformer.*``, ``token_embedding``,
``positional_embedding``, ``ln_final``, ``text_projection`` (text) and ``logit_scale``.
SigLIP / SigLIP 2 (open_clip's ``CustomTextCLIP``): ``visual.trunk.*`` (a timm ViT with an
attention-pool head ``attn_pool``), ``text.*`` (its projection a Linear with a bias),
``logit_scale`` and ``logit_bias``.

Conversion is strict: every source key must have a row, and every tensor the rank (and,
where the layout changes, the shape) the row expects, else a ``KeyError`` / ``ValueError``
lists the offenders; the loader then checks every shape against the model.
"""
import re
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch

_BLOCK = (  # open_clip ResidualAttentionBlock -> mmclip TransformerEncoderLayer
    (r'ln_1\.(weight|bias)', r'ln1.\1'),
    (r'attn\.in_proj_(weight|bias)', r'attn.qkv.\1'),
    (r'attn\.out_proj\.(weight|bias)', r'attn.proj.\1'),
    (r'ln_2\.(weight|bias)', r'ln2.\1'),
    (r'mlp\.c_fc\.(weight|bias)', r'ffn.layers.0.0.\1'),
    (r'mlp\.c_proj\.(weight|bias)', r'ffn.layers.1.\1'),
)


def _blocks(src_prefix: str, dst_prefix: str, block: tuple = _BLOCK) -> tuple:
    """The ``block`` rows for every block under ``src_prefix`` (block index: group 1).
    Their layout is unchanged; the loader checks their shapes against the model."""
    rows = []
    for src, dst in block:
        rows.append((src_prefix + r'\.(\d+)\.' + src,
                     dst_prefix + r'.\1.' + dst.replace(r'\1', r'\2'), None, _same))
    return tuple(rows)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _token(x: torch.Tensor) -> torch.Tensor:
    """[C] -> [1, 1, C] (the class token)."""
    return x.reshape(1, 1, -1)


def _batch(x: torch.Tensor) -> torch.Tensor:
    """[N, C] -> [1, N, C] (the image position embedding)."""
    return x.unsqueeze(0)


def _transpose(x: torch.Tensor) -> torch.Tensor:
    """Linear weight [D, C] -> projection [C, D] (mmclip computes ``x @ projection``)."""
    return x.t()


_TIMM_BLOCK = (  # timm Block (SigLIP's image tower) -> mmclip TransformerEncoderLayer
    (r'norm1\.(weight|bias)', r'ln1.\1'),
    (r'attn\.qkv\.(weight|bias)', r'attn.qkv.\1'),
    (r'attn\.proj\.(weight|bias)', r'attn.proj.\1'),
    (r'norm2\.(weight|bias)', r'ln2.\1'),
    (r'mlp\.fc1\.(weight|bias)', r'ffn.layers.0.0.\1'),
    (r'mlp\.fc2\.(weight|bias)', r'ffn.layers.1.\1'),
)
_SIGLIP_VISUAL = r'visual\.trunk\.'


# (open_clip regex, mmclip template, source rank, layout change).
OPEN_CLIP_TO_MMCLIP: Tuple[Tuple[str, str, Optional[int], Callable], ...] = (
    (r'visual\.class_embedding', 'backbone.cls_token', 1, _token),
    (r'visual\.positional_embedding', 'backbone.pos_embed', 2, _batch),
    (r'visual\.conv1\.weight', 'backbone.patch_embed.projection.weight', 4, _same),
    (r'visual\.ln_pre\.(weight|bias)', r'backbone.pre_norm.\1', 1, _same),
    *_blocks(r'visual\.transformer\.resblocks', 'backbone.layers'),
    (r'visual\.ln_post\.(weight|bias)', r'backbone.ln1.\1', 1, _same),
    (r'visual\.proj', 'head.proj', 2, _same),
    (r'logit_scale', 'head.logit_scale', 0, _same),
    (r'token_embedding\.weight', 'text_backbone.token_embedding.weight', 2, _same),
    (r'positional_embedding', 'text_backbone.pos_embed', 2, _same),
    *_blocks(r'transformer\.resblocks', 'text_backbone.layers'),
    (r'ln_final\.(weight|bias)', r'text_backbone.ln_final.\1', 1, _same),
    (r'text_projection', 'text_backbone.projection', 2, _same),
    # SigLIP / SigLIP 2
    (_SIGLIP_VISUAL + r'pos_embed', 'backbone.pos_embed', 3, _same),
    (_SIGLIP_VISUAL + r'patch_embed\.proj\.(weight|bias)',
     r'backbone.patch_embed.projection.\1', None, _same),
    *_blocks(_SIGLIP_VISUAL + r'blocks', 'backbone.layers', _TIMM_BLOCK),
    (_SIGLIP_VISUAL + r'norm\.(weight|bias)', r'backbone.ln1.\1', 1, _same),
    (_SIGLIP_VISUAL + r'attn_pool\.latent', 'backbone.attn_pool.latent', 3, _same),
    (_SIGLIP_VISUAL + r'attn_pool\.(q|kv|proj|norm)\.(weight|bias)',
     r'backbone.attn_pool.\1.\2', None, _same),
    (_SIGLIP_VISUAL + r'attn_pool\.mlp\.fc1\.(weight|bias)',
     r'backbone.attn_pool.ffn.layers.0.0.\1', None, _same),
    (_SIGLIP_VISUAL + r'attn_pool\.mlp\.fc2\.(weight|bias)',
     r'backbone.attn_pool.ffn.layers.1.\1', None, _same),
    (r'logit_bias', 'head.logit_bias', 0, _same),
    (r'text\.token_embedding\.weight', 'text_backbone.token_embedding.weight', 2, _same),
    (r'text\.positional_embedding', 'text_backbone.pos_embed', 2, _same),
    *_blocks(r'text\.transformer\.resblocks', 'text_backbone.layers'),
    (r'text\.ln_final\.(weight|bias)', r'text_backbone.ln_final.\1', 1, _same),
    (r'text\.text_projection\.weight', 'text_backbone.projection', 2, _transpose),
    (r'text\.text_projection\.bias', 'text_backbone.projection_bias', 1, _same),
)
_COMPILED = tuple((re.compile(src + r'$'), dst, rank, fn)
                  for src, dst, rank, fn in OPEN_CLIP_TO_MMCLIP)
TEXT_TOWER_PREFIX = 'text_backbone.'


def is_open_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """open_clip CLIP checkpoints have ``visual.conv1.weight`` and ``token_embedding``;
    SigLIP ones ``visual.trunk.patch_embed.proj.weight`` and ``text.token_embedding``."""
    return (('visual.conv1.weight' in state_dict and 'token_embedding.weight' in state_dict)
            or ('visual.trunk.patch_embed.proj.weight' in state_dict
                and 'text.token_embedding.weight' in state_dict))


def convert_open_clip_state_dict(
        state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename (and re-lay-out) an open_clip CLIP state dict (open_clip keys -> tensors) to
    mmclip keys, consuming every key; shapes are checked against the model by the loader.

    Raises:
        KeyError: listing open_clip keys with no row in ``OPEN_CLIP_TO_MMCLIP``.
        ValueError: listing tensors of an unexpected rank.
    """
    converted, unknown, bad = {}, [], []
    for key, value in state_dict.items():
        for pattern, template, rank, layout in _COMPILED:
            if pattern.match(key):
                break
        else:
            unknown.append(key)
            continue
        if rank is not None and value.ndim != rank:
            bad.append(f'{key}: {value.ndim}-d {tuple(value.shape)}, expected {rank}-d')
            continue
        converted[pattern.sub(template, key)] = layout(value)
    if unknown:
        raise KeyError(f'{len(unknown)} open_clip key(s) have no mmclip name (not a CLIP or '
                       f'SigLIP ViT checkpoint?): {sorted(unknown)[:20]}')
    if bad:
        raise ValueError('open_clip -> mmclip conversion: unexpected tensor shapes:\n  ' +
                         '\n  '.join(bad))
    return converted
