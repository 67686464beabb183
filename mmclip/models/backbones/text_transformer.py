"""CLIP's and SigLIP's text towers, built from the image tower's blocks.

Data flow for token ids [B, L] (L <= context_length; each row is start-of-text, the BPE
tokens, end-of-text, then zeros; end-of-text is the largest id in the vocabulary):
  cut to the longest row            -> [B, L'], L' = 1 + max end-of-text position
  token_embedding + pos_embed[:L']  -> [B, L', C]
  layers (pre-LN blocks, causal)    -> [B, L', C]
  ln_final, the end-of-text token   -> [B, C]
  @ projection                      -> [B, D]

Cutting the padding off is exact: under the causal mask no token attends to a later one,
so the end-of-text token never sees the padding that follows it.

SigLIP's towers (``causal=False``, ``pool_type='last'``, ``proj_bias=True``, LayerNorm eps
1e-6) attend in both directions over all ``context_length`` positions, padding included,
pool the last position after ``ln_final`` and project with a bias, as open_clip's
``TextTransformer`` with ``no_causal_mask``, ``pool_type='last'`` and ``proj_bias`` does.
Nothing is cut there: every token sees the padding.
"""
from typing import Dict, Union

import torch
from mmengine.model import BaseModule
from torch import nn

from mmclip.registry import MODELS

from ..utils.transformer import TransformerEncoderLayer, resolve_arch

POOL_TYPES = ('eot', 'eos', 'last')


@MODELS.register_module()
class CLIPTextTransformer(BaseModule):
    """The text encoder + projection of a CLIP model (open_clip's ``TextTransformer``).

    Config keys:
        arch: a preset from ``arch_zoo`` ('b' / 'base': width 512, 12 layers, 8 heads,
            MLP 2048, the text tower of ViT-B/16 and B/32; 'l' / 'large': 768, 12 layers,
            12 heads, MLP 3072, that of ViT-L/14; 'h' / 'huge': 1024, 24 layers, 16 heads,
            MLP 4096, that of ViT-H/14; 'bigg': 1280, 32 layers, 20 heads, MLP 5120, that
            of ViT-bigG/14; 'so400m': 1152, 27 layers, 16 heads, MLP 4304, that of SigLIP's
            SO400M; SigLIP's B/16 and L/16 text towers are 'l' and 'h'), or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads`` and ``feedforward_channels``.
        out_channels: D, the joint image-text embedding size (B: 512, L: 768, H: 1024,
            bigG: 1280).
        context_length: token positions (77).
        vocab_size: BPE vocabulary size (49408).
        act_cfg: ``dict(type='GELU')``, ``dict(type='QuickGELU')`` (OpenAI's towers) or
            ``dict(type='GELUTanh')`` (SigLIP 2's).
        causal: causal self-attention (CLIP) or bidirectional (SigLIP).
        pool_type: 'eot' (the end-of-text token, the largest id: CLIP), 'eos' (the first
            ``eos_id`` token: MetaCLIP 2, whose XLM-V vocabulary puts end-of-text at id 2)
            or 'last' (the last of the ``context_length`` positions: SigLIP).
        eos_id: the end-of-text id of ``pool_type='eos'``.
        proj_bias: the projection has a bias ``projection_bias`` [D] (SigLIP).
        norm_eps: LayerNorm eps (CLIP 1e-5, SigLIP 1e-6).
        init_cfg: mmengine init config.

    ``forward(text [B, L] int64)`` returns the unnormalised text embedding [B, D].
    """

    arch_zoo: Dict[str, Dict[str, int]] = {
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=512, num_layers=12, num_heads=8, feedforward_channels=2048)),
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
        **dict.fromkeys(['h', 'huge'], dict(
            embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096)),
        **dict.fromkeys(['bigg'], dict(
            embed_dims=1280, num_layers=32, num_heads=20, feedforward_channels=5120)),
        **dict.fromkeys(['so400m'], dict(
            embed_dims=1152, num_layers=27, num_heads=16, feedforward_channels=4304)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 out_channels: int = 512,
                 context_length: int = 77,
                 vocab_size: int = 49408,
                 act_cfg: dict = dict(type='GELU'),
                 causal: bool = True,
                 pool_type: str = 'eot',
                 eos_id: int = 2,
                 proj_bias: bool = False,
                 norm_eps: float = 1e-5,
                 init_cfg: Union[dict, list, None] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pool_type not in POOL_TYPES:
            raise ValueError(f'pool_type must be one of {POOL_TYPES}; got {pool_type!r}.')
        if pool_type != 'last' and not causal:
            raise ValueError(f"pool_type={pool_type!r} needs causal=True: padding is cut at "
                             f"the end-of-text token, which only a causal tower allows.")
        self.causal, self.pool_type, self.eos_id = causal, pool_type, eos_id
        settings = resolve_arch(arch, self.arch_zoo, 'text arch')
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
                layer_norm_eps=norm_eps,
                act_cfg=act_cfg,
                causal=causal) for _ in range(settings['num_layers'])
        ])
        self.ln_final = nn.LayerNorm(C, eps=norm_eps)
        self.projection = nn.Parameter(torch.randn(C, out_channels) * C**-0.5)
        self.projection_bias = nn.Parameter(torch.zeros(out_channels)) if proj_bias else None

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """text [B, L] token ids -> embedding [B, D] (not normalised)."""
        if text.ndim != 2 or text.shape[1] > self.context_length:
            raise ValueError(f'text must be token ids [B, L] with L <= {self.context_length}; '
                             f'got shape {tuple(text.shape)}.')
        if self.pool_type == 'last':
            pooled = torch.full_like(text[:, 0], text.shape[1] - 1)
        else:
            # open_clip's text_global_pool: the largest id, or the first eos_id (argmax of
            # the boolean row picks the first True).
            pooled = (text.argmax(dim=-1) if self.pool_type == 'eot' else
                      (text == self.eos_id).int().argmax(dim=-1))
            text = text[:, :int(pooled.max()) + 1]
        x = self.token_embedding(text) + self.pos_embed[:text.shape[1]]
        for layer in self.layers:
            x = layer(x)
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), pooled])
        x = x @ self.projection
        return x if self.projection_bias is None else x + self.projection_bias
