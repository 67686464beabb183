"""CLIP's text tower: a causal transformer built from the image tower's blocks.

Data flow for token ids [B, L] (L <= context_length; each row is start-of-text, the BPE
tokens, end-of-text, then zeros; end-of-text is the largest id in the vocabulary):
  cut to the longest row            -> [B, L'], L' = 1 + max end-of-text position
  token_embedding + pos_embed[:L']  -> [B, L', C]
  layers (pre-LN blocks, causal)    -> [B, L', C]
  ln_final, the end-of-text token   -> [B, C]
  @ projection                      -> [B, D]

Cutting the padding off is exact: under the causal mask no token attends to a later one,
so the end-of-text token never sees the padding that follows it.
"""
from typing import Dict, Union

import torch
from mmengine.model import BaseModule
from torch import nn

from mmclip.registry import MODELS

from ..utils.transformer import TransformerEncoderLayer
from .vision_transformer import resolve_arch


@MODELS.register_module()
class CLIPTextTransformer(BaseModule):
    """The text encoder + projection of a CLIP model (open_clip's ``TextTransformer``).

    Config keys:
        arch: a preset from ``arch_zoo`` ('b' / 'base': width 512, 12 layers, 8 heads,
            MLP 2048, the text tower of ViT-B/16 and B/32; 'l' / 'large': 768, 12 layers,
            12 heads, MLP 3072, that of ViT-L/14), or a dict of the four sizes (as the
            image tower's).
        out_channels: D, the joint image-text embedding size (B: 512, L: 768).
        context_length: token positions (77).
        vocab_size: BPE vocabulary size (49408).
        act_cfg: ``dict(type='GELU')`` or ``dict(type='QuickGELU')`` (OpenAI's towers).
        init_cfg: mmengine init config.

    ``forward(text [B, L] int64)`` returns the unnormalised text embedding [B, D].
    """

    arch_zoo: Dict[str, Dict[str, int]] = {
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=512, num_layers=12, num_heads=8, feedforward_channels=2048)),
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 out_channels: int = 512,
                 context_length: int = 77,
                 vocab_size: int = 49408,
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg: Union[dict, list, None] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch, self.arch_zoo, kind='text arch')
        C = settings['embed_dims']
        self.embed_dims, self.context_length = C, context_length
        # open_clip's initialisation (random towers; real ones are loaded).
        self.token_embedding = nn.Embedding(vocab_size, C)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.pos_embed = nn.Parameter(torch.randn(context_length, C) * 0.01)
        self.layers = nn.ModuleList([
            TransformerEncoderLayer(
                embed_dims=C,
                num_heads=settings['num_heads'],
                feedforward_channels=settings['feedforward_channels'],
                act_cfg=act_cfg,
                causal=True) for _ in range(settings['num_layers'])
        ])
        self.ln_final = nn.LayerNorm(C, eps=1e-5)
        self.projection = nn.Parameter(torch.randn(C, out_channels) * C**-0.5)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """text [B, L] token ids -> embedding [B, D] (not normalised)."""
        if text.ndim != 2 or text.shape[1] > self.context_length:
            raise ValueError(f'text must be token ids [B, L] with L <= {self.context_length}; '
                             f'got shape {tuple(text.shape)}.')
        eot = text.argmax(dim=-1)
        text = text[:, :int(eot.max()) + 1]
        x = self.token_embedding(text) + self.pos_embed[:text.shape[1]]
        for layer in self.layers:
            x = layer(x)
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), eot])
        return x @ self.projection
