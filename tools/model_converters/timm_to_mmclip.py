"""Convert a timm CLIP ViT-B checkpoint to the published mmclip format.

    python tools/model_converters/timm_to_mmclip.py SRC DST [--verify] [--overwrite]

SRC is a timm state dict (``.safetensors``, ``.bin`` or ``.pth``, e.g. the
``model.safetensors`` of ``https://huggingface.co/timm/<model>``); it is read without
executing pickled code and renamed with the one conversion table
(``mmclip.checkpoint.TIMM_TO_MMCLIP``), every key consumed. DST is written as a plain
state dict: ``.safetensors``, or ``torch.save`` for any other extension. The SHA-256
printed at the end gives the published name, ``<name>-<first 8 hex digits>.pth``.

DST is written whole or not at all (a partial file renamed into place). An existing DST
is refused unless ``--overwrite``; a DST that is a symbolic link is always refused (the
file behind it may be anyone's).

``--verify`` (needs timm) builds the timm model the weights belong to and the mmclip
model from DST, runs both on the same random batch and prints the largest difference.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional

import torch

import mmclip  # noqa: F401  (registers mmclip's modules)
from mmclip.checkpoint import CheckpointFormatError, convert_timm_state_dict, read_checkpoint_file
from mmclip.checkpoint.download import sha256_of
from mmclip.checkpoint.loader import state_dict_format, unwrap_state_dict
from mmclip.cli.launch import ArgumentParser, add_debug_option, debug_requested, exit_code_of
from mmclip.cli.outputs import make_parent_folder
from mmclip.utils.atomic_file import atomic_write

SEED_CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'clip',
                       'vit-base-p32_pt-64xb64_in1k.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Convert a timm CLIP ViT checkpoint to mmclip.')
    parser.add_argument('src', help='timm checkpoint (.safetensors / .bin / .pth)')
    parser.add_argument('dst', help='output file (.pth, or .safetensors)')
    parser.add_argument('--verify', action='store_true',
                        help='compare the logits of timm and mmclip on a random batch')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing DST (never one that is a symbolic link)')
    add_debug_option(parser)
    return parser.parse_args(argv)


def load_timm_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'SRC {path}: no such file.')
    state_dict = unwrap_state_dict(read_checkpoint_file(path), path)
    if state_dict_format(state_dict) != 'timm':
        already = any(k.startswith('backbone.') for k in state_dict)
        hint = ' It has mmclip keys (backbone.*): it is converted already.' if already else ''
        raise CheckpointFormatError(
            f'SRC {path} is not a timm ViT state dict: expected keys such as '
            f'patch_embed.proj.weight and blocks.0.*, bare or under "state_dict".{hint}')
    return state_dict


def check_dst(path: str, overwrite: bool) -> None:
    """Refuse a DST this run may not replace: a symbolic link (writing through it would
    change the file behind it), or an existing file without ``overwrite``."""
    if osp.islink(path):
        raise ValueError(f'DST {path} is a symbolic link; the converter writes only a '
                         f'regular file: give another path.')
    if osp.lexists(path) and not (overwrite and osp.isfile(path)):
        raise ValueError(f'DST {path} exists; pass --overwrite to replace it.'
                         if osp.isfile(path) else f'DST {path} exists and is not a file.')
    make_parent_folder(path, 'DST')


def save(state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """Write ``path`` atomically: an interrupted run leaves no half-written checkpoint."""
    with atomic_write(path) as f:
        if path.endswith('.safetensors'):
            from safetensors.torch import save
            f.write(save({k: v.contiguous() for k, v in state_dict.items()}))
        else:
            torch.save(state_dict, f)


def geometry(state_dict: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """Patch size, input size and classes, read off the tensors (mmclip keys)."""
    patch = state_dict['backbone.patch_embed.projection.weight'].shape[-1]
    tokens = state_dict['backbone.pos_embed'].shape[1] - 1
    return dict(patch_size=patch, img_size=int(round(tokens ** 0.5)) * patch,
                num_classes=state_dict['head.layers.head.weight'].shape[0])


def verify(timm_state: Dict[str, torch.Tensor], dst: str) -> float:
    """Max |logits difference| of timm and mmclip (loaded from ``dst``) on a random batch."""
    try:
        import timm
    except ImportError:
        raise SystemExit('--verify needs timm: pip install timm (the conversion itself '
                         'is done and saved).') from None
    from mmclip.checkpoint.loader import load_state_dict_from_source
    geo = geometry(load_state_dict_from_source(dst))
    name = f'vit_base_patch{geo["patch_size"]}_clip_{geo["img_size"]}'
    reference = timm.create_model(name, pretrained=False, num_classes=geo['num_classes'])
    reference.load_state_dict(timm_state, strict=True)
    model = mmclip.get_model(SEED_CONFIG, pretrained=dst,
                             backbone=dict(img_size=geo['img_size'], patch_size=geo['patch_size']),
                             head=dict(num_classes=geo['num_classes']))
    size = geo['img_size']
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(x) - reference.eval()(x)).abs().max().item()
    print(f'--verify: timm {name} vs mmclip on a random [2, 3, {size}, {size}] batch: '
          f'max |logits difference| = {diff:.3e}')
    return diff


def run(args: argparse.Namespace) -> None:
    check_dst(args.dst, args.overwrite)
    timm_state = load_timm_state_dict(args.src)
    save(convert_timm_state_dict(timm_state), args.dst)
    digest = sha256_of(args.dst)
    stem, ext = osp.splitext(osp.basename(args.dst))
    print(f'Saved {len(timm_state)} tensors to {args.dst}\nsha256: {digest}\n'
          f'published name: {stem}-{digest[:8]}{ext}')
    if args.verify:
        verify(timm_state, args.dst)


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
