"""Write the zero-shot CLIP classifier as an ordinary, trainable classifier checkpoint.

    python tools/model_converters/zeroshot_to_classifier.py ZERO_SHOT DST
        [--pretrained PATH_OR_URL] [--classes NAMES] [--templates TEMPLATES]

ZERO_SHOT is a zero-shot config or zoo name (``mmclip.list_models('*zeroshot*')``); its
weights are ``--pretrained`` (an open_clip file or an mmclip zero-shot checkpoint;
default, after a zoo name: the zoo weights). The head is built from the class names and
templates (default: the config's), then DST receives the state dict of an
``ImageClassifier`` with a ``CLIPLinearClsHead``: the image tower, the projection and
``exp(logit_scale) * class embeddings`` as the linear head (bias 0), whose logits are the
zero-shot model's (``mmclip.models.classifiers.zero_shot_init``). It is WiSE-FT's
zero-shot end point and the start of the robust fine-tuning recipes
(docs/robust_finetune.md). DST is written whole or not at all, and never over an
existing file.

--classes: comma-separated names, a text file with one name per line, or 'imagenet'.
--templates: '|'-separated templates each with one {}, or 'openai_imagenet'.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence, Union

import torch

import mmclip
from mmclip.cli.launch import ArgumentParser, add_debug_option, debug_requested, exit_code_of
from mmclip.cli.outputs import make_parent_folder
from mmclip.models.classifiers.zero_shot_init import zero_shot_init_state_dict
from mmclip.utils.atomic_file import atomic_write


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description='Zero-shot CLIP model -> classifier checkpoint (CLIPLinearClsHead).')
    parser.add_argument('zero_shot', help='zero-shot config file or zoo name')
    parser.add_argument('dst', help='output checkpoint (.pth); must not exist')
    parser.add_argument('--pretrained', help='both CLIP towers: open_clip file or mmclip '
                        'checkpoint, path or URL (default: the zoo weights of a zoo name)')
    parser.add_argument('--classes', help="comma-separated names, a file with one per line, "
                        "or 'imagenet' (default: the config's)")
    parser.add_argument('--templates', help="'|'-separated templates with one {} each, or "
                        "'openai_imagenet' (default: the config's)")
    add_debug_option(parser)
    return parser.parse_args(argv)


def parse_classes(value: Optional[str]) -> Union[str, Sequence[str], None]:
    """None, a preset name, the lines of a file, or the comma-separated names."""
    if value is None or value == 'imagenet':
        return value
    if osp.isfile(value):
        with open(value, encoding='utf-8') as f:
            return [line.strip() for line in f if line.strip()]
    return [name.strip() for name in value.split(',')]


def parse_templates(value: Optional[str]) -> Union[str, Sequence[str], None]:
    if value is None or value == 'openai_imagenet':
        return value
    return value.split('|')


def check_dst(dst: str) -> None:
    if osp.lexists(dst):
        raise ValueError(f'DST {dst} exists; this tool never writes over a file. Remove it '
                              f'or choose another name.')
    make_parent_folder(dst, 'DST')


def run(args: argparse.Namespace) -> None:
    check_dst(args.dst)
    model = mmclip.get_model(args.zero_shot, pretrained=args.pretrained or True,
                             classes=parse_classes(args.classes),
                             templates=parse_templates(args.templates))
    if not isinstance(model, mmclip.models.ZeroShotClassifier):
        raise ValueError(f'ZERO_SHOT {args.zero_shot} is a {type(model).__name__}; expected a '
                         f"zero-shot model (mmclip.list_models('*zeroshot*')).")
    state = zero_shot_init_state_dict(model)
    head = model.head
    meta = dict(zero_shot=dict(config=str(args.zero_shot), weights=str(args.pretrained),
                               classes=list(head.classes), templates=list(head.templates)))
    with atomic_write(args.dst) as f:
        torch.save(dict(state_dict=state, meta=meta), f)
    print(f'Saved the zero-shot classifier ({len(head.classes)} classes x '
          f'{len(head.templates)} templates, {len(state)} tensors) to {args.dst}')


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
