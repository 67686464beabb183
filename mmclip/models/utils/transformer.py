"""Pre-LN transformer encoder blocks, with state-dict names of the published checkpoints.

One layer is ``x = x + attn(ln1(x)); x = x + ffn(ln2(x))`` (pre-norm, as in CLIP and timm's
``Block``). The submodule names (``ln1``, ``attn.qkv``, ``attn.proj``, ``ln2``,
``ffn.layers.0.0``, ``ffn.layers.1``) are those of the published ``.pth`` files.
"""
from functools import partial
from typing import Dict, Mapping, Union

import torch
import torch.nn.functional as F
from torch import nn

ARCH_KEYS = frozenset({'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'})


def resolve_arch(arch: Union[str, dict], arch_zoo: Mapping[str, Dict[str, int]],
                 what: str = 'arch') -> Dict[str, int]:
    """A preset name of ``arch_zoo`` (any case) or a dict with exactly ``ARCH_KEYS`` -> the
    sizes. The dict form builds towers of published shapes at other sizes (reduced-size
    parity tests, custom towers)."""
    if isinstance(arch, str):
        if arch.lower() not in arch_zoo:
            raise ValueError(f'Unknown {what} {arch!r}; choose one of {sorted(arch_zoo)} or pass '
                             f'a dict with keys {sorted(ARCH_KEYS)}.')
        return dict(arch_zoo[arch.lower()])
    if not isinstance(arch, Mapping) or set(arch) != ARCH_KEYS:
        raise ValueError(f'A custom {what} must be a dict with exactly the keys '
                         f'{sorted(ARCH_KEYS)}; got {arch!r}.')
    return dict(arch)


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation OpenAI's CLIP towers were trained with
    (erf GELU in its place shifts their embeddings; LAION's towers use erf GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# 'GELUTanh': the tanh approximation of GELU, which SigLIP 2's text towers use (open_clip's
# act_kwargs approximate='tanh'); the erf and tanh forms differ by up to ~1e-3.
ACTIVATIONS = {'GELU': nn.GELU, 'QuickGELU': QuickGELU,
               'GELUTanh': partial(nn.GELU, approximate='tanh')}


def build_activation(act_cfg: dict) -> nn.Module:
    """``dict(type='GELU')``, ``dict(type='QuickGELU')`` or ``dict(type='GELUTanh')`` -> the
    module."""
    act_type = dict(act_cfg).get('type')
    if act_type not in ACTIVATIONS or len(act_cfg) != 1:
        raise ValueError(f'act_cfg must be dict(type=<one of {sorted(ACTIVATIONS)}>); '
                         f'got {act_cfg!r}.')
    return ACTIVATIONS[act_type]()


class MultiheadAttention(nn.Module):
    """Self-attention over tokens [B, N, C] through ``F.scaled_dot_product_attention``.

    Args:
        embed_dims: C.
        num_heads: heads; C must divide by it.
        attn_drop: dropout on attention weights (training only).
        proj_drop: dropout after the output projection.
        qkv_bias: bias in the fused qkv Linear (CLIP: True).
        causal: token i attends to tokens 0..i only (CLIP's text tower).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.0,
                 proj_drop: float = 0.0,
                 qkv_bias: bool = True,
                 causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads}).')
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        # [B, N, 3C] -> 3 x [B, heads, N, C/heads]
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        return self._attend(q, k, v)

    def forward_first_query(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N, C] -> the output of the first token's query only, [B, 1, C].

        Keys and values come from all N tokens, so the result equals ``forward(x)[:, :1]``;
        the query projection, attention rows and output projection of the other tokens are
        skipped.
        """
        B, N, C = x.shape
        heads = self.num_heads
        bias = self.qkv.bias
        q = F.linear(x[:, :1], self.qkv.weight[:C], None if bias is None else bias[:C])
        kv = F.linear(x, self.qkv.weight[C:], None if bias is None else bias[C:])
        q = q.reshape(B, 1, heads, C // heads).transpose(1, 2)
        k, v = kv.reshape(B, N, 2, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self._attend(q, k, v)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [B, heads, M, D], k / v [B, heads, N, D] -> projected output [B, M, heads * D]."""
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, is_causal=self.causal)
        B, _, M, _ = q.shape
        x = x.transpose(1, 2).reshape(B, M, -1)
        return self.proj_drop(self.proj(x))


class FFN(nn.Module):
    """Linear -> activation -> Linear.

    The activation is erf GELU by default (the fine-tuned weights use it) or
    ``act_cfg=dict(type='QuickGELU')`` (OpenAI's original CLIP towers).
    ``layers.0`` = (fc1, act, dropout), ``layers.1`` = fc2, ``layers.2`` = dropout, which
    gives the published keys ``ffn.layers.0.0.*`` and ``ffn.layers.1.*``.
    """

    def __init__(self, embed_dims: int, feedforward_channels: int, drop: float = 0.0,
                 act_cfg: dict = dict(type='GELU')) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, feedforward_channels), build_activation(act_cfg),
                          nn.Dropout(drop)),
            nn.Linear(feedforward_channels, embed_dims),
            nn.Dropout(drop),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerEncoderLayer(nn.Module):
    """One pre-LN block on tokens [B, N, C].

    Args:
        embed_dims: C.
        num_heads: attention heads.
        feedforward_channels: hidden width of the FFN.
        drop_rate: dropout after attention projection and in the FFN.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic-depth probability of both residual branches.
        layer_norm_eps: LayerNorm eps (CLIP: 1e-5; a ViT default of 1e-6 changes logits).
        qkv_bias: bias in the qkv projection.
        act_cfg: the FFN activation, ``dict(type='GELU')`` or ``dict(type='QuickGELU')``.
        causal: causal self-attention (CLIP's text tower).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 layer_norm_eps: float = 1e-5,
                 qkv_bias: bool = True,
                 act_cfg: dict = dict(type='GELU'),
                 causal: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dims, eps=layer_norm_eps)
        self.attn = MultiheadAttention(embed_dims, num_heads, attn_drop_rate, drop_rate, qkv_bias,
                                       causal)
        self.ln2 = nn.LayerNorm(embed_dims, eps=layer_norm_eps)
        self.ffn = FFN(embed_dims, feedforward_channels, drop_rate, act_cfg)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln1(x)))
        return x + self.drop_path(self.ffn(self.ln2(x)))

    def forward_first_token(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N, C] -> the first token's output [B, 1, C], equal to
        ``forward(x)[:, :1]``: it attends to all tokens, but only its own query, attention
        projection and FFN are computed."""
        x = x[:, :1] + self.drop_path(self.attn.forward_first_query(self.ln1(x)))
        return x + self.drop_path(self.ffn(self.ln2(x)))


class AttentionPool(nn.Module):
    """Multi-head attention pooling (MAP): tokens [B, N, C] -> one embedding [B, C].

    SigLIP's image towers have no class token; a learned query (``latent``) attends to every
    token, then a pre-LN MLP adds its residual: ``y = proj(attn(q(latent), kv(x)));
    y = y + ffn(norm(y))``. This is big_vision's ``MAPHead`` as timm's ``AttentionPoolLatent``
    computes it (one latent, no q/k norm), which open_clip's SigLIP towers run.

    Args:
        embed_dims: C.
        num_heads: attention heads (the tower's).
        feedforward_channels: hidden width of the MLP (the tower's).
        layer_norm_eps: eps of ``norm``.
        act_cfg: the MLP activation.

    Keys: ``latent`` [1, 1, C], ``q``, ``kv`` (keys and values fused, [2C, C]), ``proj``,
    ``norm``, ``ffn.layers.0.0`` / ``ffn.layers.1``.
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int,
                 layer_norm_eps: float = 1e-6, act_cfg: dict = dict(type='GELU')) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads}).')
        self.num_heads = num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.q = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm = nn.LayerNorm(embed_dims, eps=layer_norm_eps)
        self.ffn = FFN(embed_dims, feedforward_channels, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        heads = self.num_heads
        q = self.q(self.latent).reshape(1, 1, heads, C // heads).transpose(1, 2)
        k, v = self.kv(x).reshape(B, N, 2, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q.expand(B, -1, -1, -1), k, v)
        y = self.proj(y.transpose(1, 2).reshape(B, 1, C))
        y = y + self.ffn(self.norm(y))
        return y[:, 0]
