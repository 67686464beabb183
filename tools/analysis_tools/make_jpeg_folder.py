"""Build an ImageNet-val-like folder of JPEGs from a few real photos, for speed tests.

    python tools/analysis_tools/make_jpeg_folder.py tests/data/images /tmp/jpeg50k \\
        --num-images 50000 --num-classes 1000

The layout is the ImageNet dataset's ``val`` split, so ``tools/test.py`` evaluates it with
``--data-root OUT``::

    OUT/val/ILSVRC2012_val_00000001.JPEG ...
    OUT/meta/val.txt    "<file name> <label>", label = index % num_classes

``--variants`` distinct JPEGs are made from the source photos (random crop, resize to an
ImageNet-like short edge of 256-500 px, quality 90, RGB), then hard-linked (copied where
links are not possible) until there are ``--num-images`` files. Every file is a full JPEG
to decode, so end-to-end runs pay ImageNet-like decode costs; the labels mean nothing.
"""
import argparse
import os
import random
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from mmengine.utils import ProgressBar
from PIL import Image

from mmclip.cli.launch import ArgumentParser, add_debug_option, debug_requested, exit_code_of

SOURCE_SUFFIXES = ('.jpg', '.jpeg', '.png')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Make a synthetic folder of JPEGs.')
    parser.add_argument('src', help='folder of source photos (JPEG/PNG)')
    parser.add_argument('out', help='output folder; must not exist or be empty')
    parser.add_argument('--num-images', type=int, default=50000, help='files to write')
    parser.add_argument('--num-classes', type=int, default=1000,
                        help='labels in meta/val.txt (index %% num_classes)')
    parser.add_argument('--variants', type=int, default=500,
                        help='distinct JPEGs to encode; the rest are links to them')
    parser.add_argument('--seed', type=int, default=0, help='seed of the crops and sizes')
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if min(args.num_images, args.num_classes, args.variants) < 1:
        parser.error('--num-images, --num-classes and --variants must be >= 1')
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f'{out} exists and is not an empty folder; nothing was written')
    return args


def source_photos(src: str) -> List[Image.Image]:
    paths = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in SOURCE_SUFFIXES)
    if not paths:
        raise ValueError(f'{src}: no {"/".join(SOURCE_SUFFIXES)} photos to build from')
    photos = []
    for path in paths:
        with Image.open(path) as img:
            photos.append(img.convert('RGB'))
    return photos


def random_variant(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (35-100% of each side) resized to a 256-500 px short edge."""
    w, h = photo.size
    cw, ch = int(w * rng.uniform(0.35, 1.0)), int(h * rng.uniform(0.35, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    short = rng.randint(256, 500)
    scale = short / min(cw, ch)
    return photo.crop((x, y, x + cw, y + ch)).resize(
        (max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def run(args: argparse.Namespace) -> None:
    if not Path(args.src).is_dir():
        raise NotADirectoryError(f'SRC {args.src}: no such folder.')
    rng = random.Random(args.seed)
    photos = source_photos(args.src)
    out = Path(args.out)
    variants_dir = out / '.variants'
    variants_dir.mkdir(parents=True)
    variants = []
    for i in range(min(args.variants, args.num_images)):
        path = variants_dir / f'{i:05d}.jpg'
        random_variant(photos[i % len(photos)], rng).save(path, quality=90)
        variants.append(path)

    val_dir, meta_dir = out / 'val', out / 'meta'
    val_dir.mkdir()
    meta_dir.mkdir()
    progress = ProgressBar(args.num_images)
    lines = []
    for i in range(args.num_images):
        name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        link_or_copy(variants[i % len(variants)], val_dir / name)
        lines.append(f'{name} {i % args.num_classes}\n')
        progress.update()
    (meta_dir / 'val.txt').write_text(''.join(lines))
    # The variants are only link targets: drop their names so that globbing OUT finds
    # each image once.
    shutil.rmtree(variants_dir)
    print(f'\n{args.num_images} JPEGs in {val_dir}, labels in {meta_dir / "val.txt"}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
