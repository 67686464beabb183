"""Classify images and print the top-k classes of each.

    python demo/image_demo.py demo/cat.jpg vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k
    python demo/image_demo.py demo/cat.jpg demo/rocket.jpg \
        vit-base-p16_clip-openai-pre_3rdparty_in1k
    python demo/image_demo.py demo/cat.jpg configs/clip/vit-base-p16_pt-64xb64_in1k.py \
        --pretrained work_dirs/epoch_10.pth --device cuda --topk 5
    python demo/image_demo.py demo/cat.jpg clip_vit-base-p16_openai_zeroshot-cls_in1k \
        --classes "cat,dog,rocket"

MODEL is a zoo name (``mmclip.list_models()``; its published weights are downloaded once
into the torch.hub cache) or a config file with ``--pretrained`` (a path or URL).
"""
import argparse
import sys
from typing import List, Optional, Sequence

import numpy as np

from mmclip import ImageClassificationInferencer
from mmclip.cli.launch import (
    ArgumentParser,
    add_debug_option,
    add_precision_options,
    chosen_precision,
    debug_requested,
    default_device,
    exit_code_of,
)
from mmclip.datasets.transforms import read_rgb
from mmclip.models.utils.zero_shot import ZeroShotError


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Classify an image with an mmclip model.')
    parser.add_argument('img', nargs='+', help='image file(s)')
    parser.add_argument('model', help='model-zoo name or config file')
    parser.add_argument('--pretrained', help='checkpoint path or URL (default: the zoo '
                        "model's published weights)")
    parser.add_argument('--device', help="'cpu' or 'cuda' (default: cuda if available, "
                        'else cpu)')
    add_precision_options(parser)
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument('--topk', type=int, default=5, help='how many classes to print')
    parser.add_argument('--classes', help='zero-shot models: comma-separated class names to '
                        'classify into, e.g. "cat,dog,rocket" (default: the 1000 ImageNet '
                        'classes)')
    add_debug_option(parser)
    return parser.parse_args(argv)


def split_classes(text: Optional[str]) -> Optional[List[str]]:
    """``"cat, dog,rocket"`` -> ``['cat', 'dog', 'rocket']``; None stays None."""
    if text is None:
        return None
    classes = [name.strip() for name in text.split(',')]
    if not all(classes):
        raise ZeroShotError(f'--classes must be comma-separated non-empty names; got {text!r}.')
    return classes


def ranked_table(scores: np.ndarray, classes: Optional[Sequence[str]], topk: int) -> str:
    """Rank, class name, class index and score of the ``topk`` best classes."""
    order = np.argsort(-scores, kind='stable')[:topk]
    names = [classes[i] if classes else '-' for i in order]
    width = max(len('class'), *(len(n) for n in names))
    lines = [f'{"rank":>4}  {"class":<{width}}  {"index":>5}  {"score":>7}']
    for rank, (index, name) in enumerate(zip(order, names), 1):
        lines.append(f'{rank:>4}  {name:<{width}}  {index:>5}  {scores[index]:>7.4f}')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> None:
    for option in ('topk', 'batch_size'):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1; "
                             f'got {getattr(args, option)}.')
    device = args.device or default_device()
    precision = chosen_precision(args, device)
    # Every image is read (and its problem named) before the model is built.
    images = [read_rgb(path) for path in args.img]
    inferencer = ImageClassificationInferencer(
        args.model, pretrained=args.pretrained or True, device=device, precision=precision,
        classes=split_classes(args.classes))
    print(f'{args.model} (weights: {args.pretrained or "published"}) on {device}, '
          f'precision {precision}, batch {args.batch_size}', file=sys.stderr)
    results = inferencer(images, batch_size=args.batch_size, channel_order='rgb',
                         show_progress=False)
    for path, result in zip(args.img, results):
        print(f'{path}:\n{ranked_table(result["pred_scores"], inferencer.classes, args.topk)}')


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
