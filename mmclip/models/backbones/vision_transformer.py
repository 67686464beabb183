"""CLIP ViT image tower as a classification backbone.

Data flow for an image [B, 3, H, W] with patch size P and width C:
  patch_embed (conv, no bias)        -> [B, N, C], N = (H/P) * (W/P)
  prepend cls_token, add pos_embed   -> [B, 1 + N, C]
  pre_norm (LayerNorm, CLIP only)    -> [B, 1 + N, C]
  layers (pre-LN blocks, GELU)       -> [B, 1 + N, C]
  ln1 (final LayerNorm, all tokens)  -> formatted by ``out_type``

SigLIP's towers (``with_cls_token=False``, ``pre_norm=False``: the patch convolution then
has a bias, ``out_type='attn_pool'``) pool the final tokens with ``attn_pool``, a learned
query attending to all of them (see ``AttentionPool``).
"""
import logging
import math
from typing import Dict, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from mmclip.registry import MODELS

from ..utils.adapt_on_load import adapt_on_load
from ..utils.embed import PatchEmbed, resize_pos_embed
from ..utils.transformer import AttentionPool, TransformerEncoderLayer, resolve_arch

OUT_TYPES = ('cls_token', 'featmap', 'avg_featmap', 'raw', 'attn_pool')


@MODELS.register_module()
class VisionTransformer(BaseModule):
    """Vision Transformer with CLIP's options.

    Config keys:
        arch: a preset name from ``arch_zoo`` ('b' / 'base': width 768, 12 layers,
            12 heads, MLP 3072; 'l' / 'large': 1024, 24 layers, 16 heads, MLP 4096;
            'h' / 'huge': 1280, 32 layers, 16 heads, MLP 5120; 'bigg': 1664, 48 layers,
            16 heads, MLP 8192, open_clip's ViT-bigG-14; 'so400m': 1152, 27 layers,
            16 heads, MLP 4304, SigLIP's SO400M), or
            a dict with ``embed_dims``, ``num_layers``, ``num_heads`` and
            ``feedforward_channels``.
        img_size: the square input size the position embedding is laid out for (224, 384,
            448). Other input sizes work: the embedding is resampled on the fly.
        patch_size: P (16 or 32).
        in_channels: 3.
        out_indices: which layers' outputs to return (negative counts from the end).
        drop_rate: dropout after the position embedding, attention projection and FFN.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over the layers.
        qkv_bias: bias in the qkv projection.
        norm_cfg: ``dict(type='LN', eps=1e-5)``; CLIP weights need eps 1e-5.
        final_norm: apply ``ln1`` after the last layer.
        out_type: 'cls_token' -> [B, C]; 'featmap' -> [B, C, H/P, W/P];
            'avg_featmap' -> [B, C] (mean of patch tokens); 'raw' -> [B, 1 + N, C];
            'attn_pool' -> [B, C], multi-head attention pooling of all tokens
            (``attn_pool``, SigLIP's MAP head; its heads, MLP width and activation are the
            tower's).
        with_cls_token: prepend the class token (needed for 'cls_token').
        frozen_stages: freeze the embeddings and the first K layers (and ``ln1`` when K
            is the number of layers): no grad, and kept in eval mode by ``train()``.
        pre_norm: LayerNorm right after adding the position embedding (CLIP: True).
            The patch convolution then has no bias, as in CLIP.
        act_cfg: the FFN activation: ``dict(type='GELU')`` (erf; the fine-tuned and LAION
            weights) or ``dict(type='QuickGELU')`` (OpenAI's original CLIP towers).
        init_cfg: mmengine init config.

    ``forward`` returns a tuple with one tensor per ``out_indices`` entry.

    Class-token pooling: in eval mode, when the only output is the class token of the last
    layer, that layer runs for the class token alone (``forward_first_token``: its query
    attends to every token; the other tokens' queries, projections and FFN, which nothing
    reads, are skipped). The result equals the full computation up to float rounding. Set
    the attribute ``cls_token_pooling = False`` to run the whole last layer (FLOP counts
    of the published architecture do).
    """

    arch_zoo: Dict[str, Dict[str, int]] = {
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096)),
        **dict.fromkeys(['h', 'huge'], dict(
            embed_dims=1280, num_layers=32, num_heads=16, feedforward_channels=5120)),
        # open_clip's ViT-bigG-14: head width 104, MLP int(1664 * 4.9231) = 8192.
        **dict.fromkeys(['bigg'], dict(
            embed_dims=1664, num_layers=48, num_heads=16, feedforward_channels=8192)),
        # SigLIP's shape-optimised ViT (timm vit_so400m_*): MLP int(1152 * 3.7362) = 4304.
        **dict.fromkeys(['so400m'], dict(
            embed_dims=1152, num_layers=27, num_heads=16, feedforward_channels=4304)),
    }
    num_extra_tokens = 1  # the class token
    cls_token_pooling = True

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: int = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 qkv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-5),
                 final_norm: bool = True,
                 out_type: str = 'cls_token',
                 with_cls_token: bool = True,
                 frozen_stages: int = -1,
                 pre_norm: bool = False,
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg: Union[dict, list, None] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = resolve_arch(arch, self.arch_zoo)
        C = self.arch_settings['embed_dims']
        self.embed_dims = C
        self.num_layers = self.arch_settings['num_layers']
        self.img_size = img_size
        self.patch_size = patch_size
        self.patch_resolution = (img_size // patch_size, img_size // patch_size)

        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}; got {out_type!r}.')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True.")
        self.out_type = out_type
        self.with_cls_token = with_cls_token
        self.num_extra_tokens = 1 if with_cls_token else 0
        self.out_indices = self._resolve_out_indices(out_indices)
        self.final_norm = final_norm
        self.frozen_stages = frozen_stages
        eps = self._layer_norm_eps(norm_cfg)

        self.patch_embed = PatchEmbed(in_channels, C, patch_size, bias=not pre_norm)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if with_cls_token else None
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_extra_tokens + self.patch_resolution[0] ** 2, C))
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.pre_norm = nn.LayerNorm(C, eps=eps) if pre_norm else nn.Identity()

        # Stochastic depth rises linearly over depth (plain floats: builds on 'meta' too).
        dpr = [drop_path_rate * i / max(self.num_layers - 1, 1) for i in range(self.num_layers)]
        self.layers = nn.ModuleList([
            TransformerEncoderLayer(
                embed_dims=C,
                num_heads=self.arch_settings['num_heads'],
                feedforward_channels=self.arch_settings['feedforward_channels'],
                drop_rate=drop_rate,
                drop_path_rate=dpr[i],
                layer_norm_eps=eps,
                qkv_bias=qkv_bias,
                act_cfg=act_cfg) for i in range(self.num_layers)
        ])
        self.ln1 = nn.LayerNorm(C, eps=eps) if final_norm else nn.Identity()
        self.attn_pool = AttentionPool(
            C, self.arch_settings['num_heads'], self.arch_settings['feedforward_channels'], eps,
            act_cfg) if out_type == 'attn_pool' else None

        if frozen_stages > 0:
            self._freeze_stages()
        # Any load_state_dict (mmclip's loader, mmengine's, a user's) gets a position
        # embedding of another patch grid resampled to this one.
        adapt_on_load(self)

    # ---- construction helpers -------------------------------------------------------
    def _resolve_out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        resolved = []
        for index in indices:
            if not -self.num_layers <= index < self.num_layers:
                raise ValueError(f'out_indices entry {index} is out of range for '
                                 f'{self.num_layers} layers.')
            resolved.append(index % self.num_layers)
        return tuple(resolved)

    @staticmethod
    def _layer_norm_eps(norm_cfg: dict) -> float:
        cfg = dict(norm_cfg)
        if cfg.pop('type', 'LN') not in ('LN', 'LayerNorm'):
            raise ValueError(f"norm_cfg type must be 'LN' (LayerNorm); got {norm_cfg!r}.")
        eps = cfg.pop('eps', 1e-5)
        if cfg:
            raise ValueError(f'norm_cfg takes only type and eps; unexpected {sorted(cfg)}.')
        return float(eps)

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.layers.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    # ---- loading weights ---------------------------------------------------------------
    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str = '',
                         name: str = 'the checkpoint',
                         logger: Union[str, logging.Logger] = 'current') -> None:
        """Resample ``state_dict[prefix + 'pos_embed']``, [1, extra + Hs*Ws, C], in place to
        this tower's [1, extra + Hd*Wd, C] when only its patch grid differs (the patch
        embedding is this tower's; bicubic, as timm), with a warning: the checkpoint was
        trained at another input size. Run by ``load_state_dict`` (a load pre-hook) and by
        mmclip's loader before its checks.

        Raises:
            ValueError: the checkpoint's patch tokens do not form a square grid.
        """
        key = prefix + 'pos_embed'
        value, target = state_dict.get(key), self.pos_embed.shape
        patches = state_dict.get(prefix + 'patch_embed.projection.weight')
        if (value is None or value.shape == target or value.ndim != 3
                or value.shape[-1] != target[-1] or patches is None
                or patches.shape != self.patch_embed.projection.weight.shape):
            return  # the same grid, or another tower: nothing to resample
        extra = self.num_extra_tokens
        side = math.isqrt(value.shape[1] - extra)
        if side * side != value.shape[1] - extra:
            raise ValueError(f'{name}: {key} has {value.shape[1] - extra} patch tokens, which '
                             f'do not form a square grid; cannot resample it.')
        state_dict[key] = resize_pos_embed(value, (side, side), self.patch_resolution, extra)
        print_log(f'Resampled {key} of {name} from a {side}x{side} to a '
                  f'{self.patch_resolution[0]}x{self.patch_resolution[1]} patch grid: the '
                  f'checkpoint was trained at another input size than the model is built for, '
                  f'so its accuracy may differ from the published one.', logger=logger,
                  level=logging.WARNING)

    # ---- freezing ----------------------------------------------------------------------
    def _frozen_modules(self):
        modules = [self.patch_embed, self.pre_norm, self.drop_after_pos]
        modules += list(self.layers[:self.frozen_stages])
        if self.frozen_stages >= self.num_layers:
            modules.append(self.ln1)
        return modules

    def _freeze_stages(self) -> None:
        params = [self.pos_embed] + ([self.cls_token] if self.cls_token is not None else [])
        for m in self._frozen_modules():
            m.eval()
            params += list(m.parameters())
        for p in params:
            p.requires_grad = False

    def train(self, mode: bool = True) -> 'VisionTransformer':
        super().train(mode)
        if self.frozen_stages > 0:
            for m in self._frozen_modules():
                m.eval()
        return self

    # ---- forward -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """x: [B, 3, H, W] -> tuple of features, one per ``out_indices`` entry."""
        B = x.shape[0]
        x, grid = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, grid,
                                 self.num_extra_tokens)
        x = self.pre_norm(self.drop_after_pos(x))

        outs = []
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            x = layer.forward_first_token(x) if i == last and self._pools() else layer(x)
            if i == last:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, grid))
        return tuple(outs)

    def _pools(self) -> bool:
        """Whether the last layer may run for the class token alone (see the class doc)."""
        return (self.cls_token_pooling and not self.training and self.out_type == 'cls_token'
                and self.out_indices == (self.num_layers - 1, ))

    def _format_output(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        if self.out_type == 'attn_pool':
            return self.attn_pool(x)
        patch_tokens = x[:, self.num_extra_tokens:]
        if self.out_type == 'featmap':
            B, _, C = patch_tokens.shape
            return patch_tokens.reshape(B, *grid, C).permute(0, 3, 1, 2)
        return patch_tokens.mean(dim=1)  # avg_featmap
