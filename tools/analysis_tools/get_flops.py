"""Print a config's Params (M) and FLOPs (G), counted by mmengine's analysis tools.

One multiply-add counts as one FLOP, as in the model-zoo table. The input is the
config's own resolution (``model.backbone.img_size``) unless ``--shape`` says otherwise.

    python tools/analysis_tools/get_flops.py configs/clip/vit-base-p32_pt-64xb64_in1k.py
"""
import argparse
import sys
from typing import Optional, Sequence, Tuple

import torch
from mmengine.analysis import get_model_complexity_info

from mmclip import get_model
from mmclip.apis.model_zoo import resolve_config
from mmclip.cli.launch import (
    ArgumentParser,
    add_cfg_options,
    add_debug_option,
    debug_requested,
    exit_code_of,
    merge_cfg_options,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Count Params and FLOPs of a model config.')
    parser.add_argument('config', help='config file path, or a model-zoo name')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width, multiples of the patch size '
                        '(default: the backbone img_size)')
    add_cfg_options(parser, 'model.head.num_classes=10')
    add_debug_option(parser)
    return parser.parse_args(argv)


def check_shape(shape: Tuple[int, int], patch: int) -> None:
    """The backbone floors the patch grid: 250 px at patch 32 would be counted as 224."""
    if any(side < patch or side % patch for side in shape):
        near = sorted({max(patch, round(side / patch) * patch) for side in shape})
        raise ValueError(f'--shape {shape[0]} {shape[1]}: each side must be a multiple of the '
                         f'patch size {patch} (e.g. {" or ".join(map(str, near))}).')


def count(model: torch.nn.Module, shape: Tuple[int, int]) -> Tuple[int, int, str]:
    """Returns (params, FLOPs, mmengine's per-module table) for one image."""
    with torch.no_grad():
        info = get_model_complexity_info(model, input_shape=(3, *shape), show_arch=False)
    return info['params'], info['flops'], info['out_table']


def params_at_224_grid(model: torch.nn.Module, params: int) -> int:
    """Params with the position embedding counted on the 224 px grid.

    The model-zoo table lists 88.22 M / 86.57 M for every B/32 / B/16 checkpoint, which
    counts a 224 px position embedding; a 384 or 448 px model carries (and its checkpoint
    holds) a larger one, e.g. 577 instead of 197 tokens for B/16 at 384.
    """
    backbone = model.backbone
    grid_224 = (224 // backbone.patch_size)**2 + backbone.num_extra_tokens
    extra_tokens = backbone.pos_embed.shape[1] - grid_224
    return params - extra_tokens * backbone.embed_dims


def run(args: argparse.Namespace) -> None:
    cfg = resolve_config(args.config)[0]
    merge_cfg_options(cfg, args.cfg_options)
    size = cfg.model.backbone.get('img_size', 224)
    shape = tuple(args.shape) if args.shape else (size, size)
    check_shape(shape, cfg.model.backbone.get('patch_size', 16))
    model = get_model(cfg)
    # Count the published architecture: the whole last layer, not its class-token shortcut.
    model.backbone.cls_token_pooling = False
    params, flops, table = count(model, shape)
    print(table)
    split = '=' * 30
    print(f'{split}\nInput shape: (3, {shape[0]}, {shape[1]})\nFlops: {flops / 1e9:.2f} G\n'
          f'Params: {params / 1e6:.2f} M')
    if size != 224:
        print(f'Params with a 224 px position embedding (as the model-zoo table counts): '
              f'{params_at_224_grid(model, params) / 1e6:.2f} M')
    print(split)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
