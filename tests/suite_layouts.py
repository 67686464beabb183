"""Tiny stand-ins of the evaluation suite's datasets, each in its real on-disk layout.

Used by tests/test_eval_suite.py and by the docs test, which runs docs/eval_suite.md's
commands on them. Class folders are all there (empty but for a few images), as in the
archives, so every layout check of the datasets runs for real.
"""
import json
from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

from mmclip.datasets.imagenet_shifts import imagenet_wnids, objectnet_classes, subset_wnids


def tiny_image(path: Path, seed: int, size=(48, 40)) -> Path:
    """A small RGB JPEG of smooth random colours (different for each seed)."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, 256, (4, 5, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize(size, Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90)
    return path


def _class_folders(root: Path, names, filled, seed: int, ext: str = '.jpg') -> None:
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(filled):
        tiny_image(root / name / f'{seed}_{i}{ext}', seed + i)


def make_shift_sets(root: Path) -> Dict[str, int]:
    """The ImageNet shift suite under ``root`` (folder names as the archives extract);
    returns the number of images of each dataset."""
    counts = {}
    val = root / 'imagenet' / 'val'
    (root / 'imagenet' / 'meta').mkdir(parents=True, exist_ok=True)
    labels = [0, 417, 999]
    for i, label in enumerate(labels):
        tiny_image(val / f'ILSVRC2012_val_{i + 1:08d}.JPEG', 100 + i)
    (root / 'imagenet' / 'meta' / 'val.txt').write_text(''.join(
        f'ILSVRC2012_val_{i + 1:08d}.JPEG {label}\n' for i, label in enumerate(labels)))
    counts['imagenet1k'] = 3
    numbers = [str(i) for i in range(1000)]
    for seed, (name, folder) in enumerate((
            ('imagenetv2', 'imagenetv2-matched-frequency-format-val'),
            ('imagenetv2-threshold0.7', 'imagenetv2-threshold0.7-format-val'),
            ('imagenetv2-top-images', 'imagenetv2-top-images-format-val'))):
        _class_folders(root / folder, numbers, ['0', '5', '999'], 200 + 10 * seed, '.jpeg')
        counts[name] = 3
    wnids = imagenet_wnids()
    _class_folders(root / 'sketch', wnids, [wnids[1], wnids[998]], 300, '.JPEG')
    counts['imagenet_sketch'] = 2
    for seed, name in enumerate(('imagenet_r', 'imagenet_a')):
        sub = subset_wnids(name)
        folder = root / name.replace('_', '-')
        _class_folders(folder, sub, [sub[0], sub[100], sub[199]], 400 + 10 * seed)
        (folder / 'README.txt').write_text('As the archive ships it.\n')
        counts[name.replace('_', '-')] = 3
    folders = [c['folder'] for c in objectnet_classes()]
    images = root / 'objectnet-1.0' / 'images'
    _class_folders(images, folders + ['squeegee'], [folders[0], folders[112], 'squeegee'],
                   500, '.png')
    (root / 'objectnet-1.0' / 'mappings').mkdir(exist_ok=True)
    counts['objectnet'] = 2  # squeegee has no ImageNet class
    return counts


def make_retrieval_sets(root: Path) -> Dict[str, int]:
    """MS-COCO (Karpathy json) and Flickr30k / Flickr8k (Karpathy txt) under ``root``;
    returns the number of images of each."""
    captions = ['a red square', 'a blue circle', 'two dogs, playing', 'a green field',
                'a city at night', 'a bowl of fruit']
    coco = root / 'mscoco'
    images, annotations = [], []
    for i in range(4):
        name = f'COCO_val2014_{391895 + i:012d}.jpg'
        tiny_image(coco / 'val2014' / name, 600 + i)
        # ids out of order, as in the file: the dataset sorts them as torchvision does
        images.append(dict(id=391895 + (3 - i), file_name=f'COCO_val2014_{391898 - i:012d}.jpg'))
        for j in range(2):
            annotations.append(dict(id=10 * i + j, image_id=391895 + i,
                                    caption=captions[(i + j) % len(captions)]))
    (coco / 'coco_test_karpathy.json').write_text(
        json.dumps(dict(images=images, annotations=annotations)))
    counts = {'mscoco_captions': 4}
    for name, seed in (('flickr30k', 700), ('flickr8k', 800)):
        lines = ['image,caption']
        for i in range(3):
            tiny_image(root / name / f'{1000 + i}.jpg', seed + i)
            lines += [f'{1000 + i}.jpg,{captions[(i + j) % len(captions)]}' for j in range(2)]
        (root / name / f'{name}_test_karpathy.txt').write_text('\n'.join(lines) + '\n')
        counts[name] = 3
    return counts


def make_zeroshot_sets(root: Path) -> Dict[str, int]:
    """Three of clip_benchmark's zero-shot datasets under ``root``, as torchvision's
    readers expect them (a few classes each); returns the number of images of each."""
    # MNIST: the raw idx files (big-endian magic, sizes, then uint8 values).
    raw = root / 'mnist' / 'MNIST' / 'raw'
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    digits = rng.randint(0, 256, (6, 28, 28)).astype(np.uint8)
    (raw / 't10k-images-idx3-ubyte').write_bytes(
        np.array([2051, 6, 28, 28], '>i4').tobytes() + digits.tobytes())
    (raw / 't10k-labels-idx1-ubyte').write_bytes(
        np.array([2049, 6], '>i4').tobytes() + np.array([3, 1, 4, 1, 5, 9], np.uint8).tobytes())
    # torchvision wants the training files present too (empty here: never read).
    (raw / 'train-images-idx3-ubyte').write_bytes(np.array([2051, 0, 28, 28], '>i4').tobytes())
    (raw / 'train-labels-idx1-ubyte').write_bytes(np.array([2049, 0], '>i4').tobytes())
    # Rendered SST-2: test/<negative|positive>/*.png.
    sst = root / 'renderedsst2' / 'rendered-sst2' / 'test'
    for i, label in enumerate(('negative', 'positive', 'positive')):
        (sst / label).mkdir(parents=True, exist_ok=True)
        Image.open(tiny_image(sst / label / f'{i}.jpg', 900 + i)).save(sst / label / f'{i}.png')
        (sst / label / f'{i}.jpg').unlink()
    # DTD: dtd/dtd/images/<texture>/*.jpg and the split's label file.
    dtd = root / 'dtd' / 'dtd' / 'dtd'
    names = []
    for i, texture in enumerate(('banded', 'banded', 'dotted', 'striped', 'zigzagged')):
        tiny_image(dtd / 'images' / texture / f'{texture}_{i:04d}.jpg', 950 + i)
        names.append(f'{texture}/{texture}_{i:04d}.jpg')
    (dtd / 'labels').mkdir(parents=True, exist_ok=True)
    (dtd / 'labels' / 'test1.txt').write_text('\n'.join(names) + '\n')
    return {'mnist': 6, 'renderedsst2': 3, 'dtd': 5}
