"""Classify images and print the top-k classes of each.

    python demo/image_demo.py demo/cat.jpg vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k
    python demo/image_demo.py demo/cat.jpg demo/rocket.jpg vit-base-p16_clip-openai-pre_3rdparty_in1k
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
from mmclip.engine.launch import USER_ERRORS
from mmclip.models.utils.zero_shot import ZeroShotError
from mmclip.utils import PRECISIONS


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Classify an image with an mmclip model.')
    parser.add_argument('img', nargs='+', help='image file(s), classified as one batch')
    parser.add_argument('model', help='model-zoo name or config file')
    parser.add_argument('--pretrained', help='checkpoint path or URL (default: the zoo '
                        "model's published weights)")
    parser.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if "
                        'available)')
    parser.add_argument('--precision', default='fp32', choices=PRECISIONS)
    parser.add_argument('--topk', type=int, default=5, help='how many classes to print')
    parser.add_argument('--classes', help='zero-shot models: comma-separated class names to '
                        'classify into, e.g. "cat,dog,rocket" (default: the 1000 ImageNet '
                        'classes)')
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


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.topk < 1:
        raise ValueError(f'--topk must be at least 1; got {args.topk}.')
    try:
        inferencer = ImageClassificationInferencer(
            args.model, pretrained=args.pretrained or True, device=args.device,
            precision=args.precision, classes=split_classes(args.classes))
        results = inferencer(args.img)
    except (*USER_ERRORS, ZeroShotError, ImportError) as err:
        sys.exit(f'error: {err}')  # the message names the file or URL and what to do
    for path, result in zip(args.img, results):
        print(f'{path}:\n{ranked_table(result["pred_scores"], inferencer.classes, args.topk)}')


if __name__ == '__main__':
    main()
