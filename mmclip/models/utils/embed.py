"""Patch embedding and position-embedding resampling for ViT."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Image [B, 3, H, W] -> tokens [B, (H/P)*(W/P), C] with a stride-P convolution.

    Args:
        in_channels: input channels.
        embed_dims: C.
        patch_size: P (kernel = stride).
        bias: conv bias; CLIP towers have none, because a LayerNorm (pre-norm) follows.
    """

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int, bias: bool) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Returns tokens [B, N, C] and the patch grid (H/P, W/P)."""
        x = self.projection(x)
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), grid


def resize_pos_embed(pos_embed: torch.Tensor,
                     src_grid: Tuple[int, int],
                     dst_grid: Tuple[int, int],
                     num_extra_tokens: int = 1) -> torch.Tensor:
    """Resample a position embedding [1, extra + Hs*Ws, C] to [1, extra + Hd*Wd, C].

    The class token's embedding is kept; the grid part is resized bicubically with
    antialiasing, as timm's ``resample_abs_pos_embed`` does, so results match timm.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    expected = num_extra_tokens + src_grid[0] * src_grid[1]
    if pos_embed.shape[1] != expected:
        raise ValueError(f'pos_embed has {pos_embed.shape[1]} tokens; a {src_grid} grid with '
                         f'{num_extra_tokens} extra token(s) needs {expected}.')
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    dtype = grid.dtype
    grid = grid.reshape(1, src_grid[0], src_grid[1], -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=dst_grid, mode='bicubic', antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2).to(dtype)
    return torch.cat([extra, grid], dim=1)
