"""Tiny stand-ins of the evaluation suite's datasets, each in its real on-disk layout.

Used by tests/test_eval_suite.py and by the docs test, which runs docs/eval_suite.md's
commands on them. Class folders are all there (empty but for a few images), as in the
archives, so every layout check of the datasets runs for real.
"""
import json
from pathlib import Path
from typing import Callable, Dict

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


def _mnist(folder: Path) -> int:
    """The raw idx files (big-endian magic, sizes, then uint8 values)."""
    raw = folder / 'MNIST' / 'raw'
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
    return 6


def _renderedsst2(folder: Path) -> int:
    """rendered-sst2/test/<negative|positive>/*.png."""
    sst = folder / 'rendered-sst2' / 'test'
    for i, label in enumerate(('negative', 'positive', 'positive')):
        tiny_image(sst / label / f'{i}.png', 900 + i)
    return 3


def _dtd(folder: Path) -> int:
    """dtd/dtd/images/<texture>/*.jpg and the split's label file."""
    dtd = folder / 'dtd' / 'dtd'
    names = []
    for i, texture in enumerate(('banded', 'banded', 'dotted', 'striped', 'zigzagged')):
        tiny_image(dtd / 'images' / texture / f'{texture}_{i:04d}.jpg', 950 + i)
        names.append(f'{texture}/{texture}_{i:04d}.jpg')
    (dtd / 'labels').mkdir(parents=True, exist_ok=True)
    (dtd / 'labels' / 'test1.txt').write_text('\n'.join(names) + '\n')
    return 5


def _food101(folder: Path) -> int:
    """food-101/images/<class>/<id>.jpg and meta/test.json (class -> its images); the
    classes are the json's keys, sorted."""
    base = folder / 'food-101'
    split = {'apple_pie': ['apple_pie/1011328', 'apple_pie/101251'],
             'baby_back_ribs': ['baby_back_ribs/1005293'], 'beignets': ['beignets/1036998']}
    images = [image for names in split.values() for image in names]
    for i, image in enumerate(images):
        tiny_image(base / 'images' / f'{image}.jpg', 1000 + i)
    (base / 'meta').mkdir(parents=True, exist_ok=True)
    (base / 'meta' / 'test.json').write_text(json.dumps(split))
    return len(images)


def _pets(folder: Path) -> int:
    """oxford-iiit-pet/images/*.jpg and annotations/test.txt (image, class id from 1,
    species, breed id)."""
    base = folder / 'oxford-iiit-pet'
    # torchvision names the classes after the split's own images, so class ids 1..3 all
    # appear: a gap would leave a label without its class name.
    lines = ['Abyssinian_201 1 1 1', 'american_bulldog_100 2 2 1', 'american_bulldog_102 2 2 1',
             'american_pit_bull_terrier_100 3 2 2']
    for i, line in enumerate(lines):
        tiny_image(base / 'images' / f'{line.split()[0]}.jpg', 1010 + i)
    (base / 'annotations').mkdir(parents=True, exist_ok=True)
    (base / 'annotations' / 'test.txt').write_text('\n'.join(lines) + '\n')
    return len(lines)


def _first_classes(root: Path, filled: list, seed: int) -> int:
    """An ImageFolder's class folders, only the first ones in sorted order filled (one image
    per entry of ``filled``), so that its labels are those of clip_benchmark's class names
    (a folder left empty would be an error there); returns the number of images."""
    _class_folders(root, filled, filled, seed)
    return len(filled)


def _eurosat(folder: Path) -> int:
    """eurosat/2750/<class>/*.jpg, read whole by an ImageFolder."""
    return _first_classes(folder / 'eurosat' / '2750',
                          ['AnnualCrop', 'AnnualCrop', 'Forest', 'HerbaceousVegetation'], 1020)


def _gtsrb(folder: Path) -> int:
    """gtsrb/GTSRB/Final_Test/Images/*.ppm and gtsrb/GT-final_test.csv (';'-separated,
    the class id last)."""
    base = folder / 'gtsrb'
    rows = ['Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId']
    for i, class_id in enumerate((16, 1, 38, 42)):
        tiny_image(base / 'GTSRB' / 'Final_Test' / 'Images' / f'{i:05d}.ppm', 1030 + i)
        rows.append(f'{i:05d}.ppm;48;40;5;5;43;35;{class_id}')
    (base / 'GT-final_test.csv').write_text('\n'.join(rows) + '\n')
    return len(rows) - 1


def _fgvc_aircraft(folder: Path) -> int:
    """fgvc-aircraft-2013b/data/images/*.jpg, variants.txt (the classes) and
    images_variant_test.txt (image, variant)."""
    data = folder / 'fgvc-aircraft-2013b' / 'data'
    variants = ['707-320', '727-200', 'Cessna 172']  # a name with a space, as in the file
    tests = [('0056978', '707-320'), ('1514522', 'Cessna 172'), ('2234510', 'Cessna 172')]
    for i, (image, _) in enumerate(tests):
        tiny_image(data / 'images' / f'{image}.jpg', 1040 + i)
    (data / 'variants.txt').write_text('\n'.join(variants) + '\n')
    (data / 'images_variant_test.txt').write_text(
        ''.join(f'{image} {variant}\n' for image, variant in tests))
    return len(tests)


def _cars(folder: Path) -> int:
    """stanford_cars/cars_test/*.jpg, devkit/cars_meta.mat (the class names) and
    cars_test_annos_withlabels.mat (a struct array: box, class from 1, file name)."""
    from scipy.io import savemat
    base = folder / 'stanford_cars'
    names = ['AM General Hummer SUV 2000', 'Acura RL Sedan 2012', 'Acura TL Sedan 2012']
    fields = ('bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'fname')
    annotations = np.array([(2, 3, 40, 30, label, f'{i + 1:05d}.jpg')
                            for i, label in enumerate((3, 1, 1))],
                           dtype=[(field, 'O') for field in fields])
    for i, annotation in enumerate(annotations):
        tiny_image(base / 'cars_test' / annotation['fname'], 1050 + i)
    (base / 'devkit').mkdir(exist_ok=True)
    savemat(base / 'devkit' / 'cars_meta.mat',
            {'class_names': np.array(names, dtype=object).reshape(1, -1)})
    savemat(base / 'cars_test_annos_withlabels.mat', {'annotations': annotations.reshape(1, -1)})
    return len(annotations)


def _country211(folder: Path) -> int:
    """country211/test/<ISO country code>/*.jpg, read by an ImageFolder."""
    return _first_classes(folder / 'country211' / 'test', ['AD', 'AE', 'AE', 'AF'], 1060)


def _sun397(folder: Path) -> int:
    """SUN397/<letter>/<class>/sun_*.jpg and ClassName.txt (all images are used)."""
    base = folder / 'SUN397'
    # A two-level class, as the file has: the class is the path between letter and file.
    classes = ['/a/abbey', '/a/apartment_building/outdoor', '/b/badlands']
    filled = classes + ['/a/apartment_building/outdoor']
    for i, name in enumerate(filled):
        tiny_image(base / name[1:] / f'sun_{1070 + i}.jpg', 1070 + i)
    (base / 'ClassName.txt').write_text('\n'.join(classes) + '\n')
    return len(filled)


def _caltech101(folder: Path) -> int:
    """caltech101/101_ObjectCategories/<class>/image_NNNN.jpg (numbered from 1 in each)."""
    # clip_benchmark's reader keeps BACKGROUND_Google; the first folders in sorted order
    # give the labels of its first class names.
    counts = {'BACKGROUND_Google': 1, 'Faces': 2, 'Faces_easy': 1}
    categories = folder / 'caltech101' / '101_ObjectCategories'
    for c, (name, count) in enumerate(counts.items()):
        for i in range(count):
            tiny_image(categories / name / f'image_{i + 1:04d}.jpg', 1080 + 10 * c + i)
    return sum(counts.values())


def _fer2013(folder: Path) -> int:
    """test/<emotion>/*.jpg (the Kaggle archive), read by an ImageFolder."""
    return _first_classes(folder / 'test', ['angry', 'disgust', 'fear', 'fear'], 1110)


def _voc2007(folder: Path) -> int:
    """VOCdevkit/VOC2007/: the test ids in ImageSets/Main/aeroplane_test.txt, an XML of
    objects per image in Annotations/; each object's box is one (cropped) image."""
    voc = folder / 'VOCdevkit' / 'VOC2007'
    images = {'000001': [('dog', (4, 6, 30, 34)), ('person', (20, 2, 46, 38))],
              '000002': [('cat', (0, 0, 47, 39))]}
    (voc / 'Annotations').mkdir(parents=True, exist_ok=True)
    for i, (image, objects) in enumerate(images.items()):
        tiny_image(voc / 'JPEGImages' / f'{image}.jpg', 1120 + i)
        (voc / 'Annotations' / f'{image}.xml').write_text(_voc_xml(image, objects))
    (voc / 'ImageSets' / 'Main').mkdir(parents=True, exist_ok=True)
    (voc / 'ImageSets' / 'Main' / 'aeroplane_test.txt').write_text(
        ''.join(f'{image} -1\n' for image in images))
    return sum(len(objects) for objects in images.values())


def _voc_xml(image: str, objects) -> str:
    """An annotation as the devkit writes it: the name first in each object, the box
    corners in xmin, ymin, xmax, ymax order (clip_benchmark reads them by position)."""
    parts = [f'<annotation><folder>VOC2007</folder><filename>{image}.jpg</filename>'
             '<size><width>48</width><height>40</height><depth>3</depth></size>']
    for name, (x1, y1, x2, y2) in objects:
        parts.append(f'<object><name>{name}</name><pose>Unspecified</pose>'
                     '<truncated>0</truncated><difficult>0</difficult>'
                     f'<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>'
                     f'<ymax>{y2}</ymax></bndbox></object>')
    return ''.join(parts) + '</annotation>\n'


# Each builds its dataset in the folder it is given and returns its number of images.
# Left out: cifar10, cifar100, stl10 and flowers (torchvision's readers check the MD5 of
# the official files), pcam (its reader needs h5py) and svhn (clip_benchmark 1.6.2's
# build_dataset has no 'svhn'); docs/eval_suite.md says why.
def _pcam(folder: Path) -> int:
    """pcam/camelyonpatch_level_2_split_test_{x,y}.h5: 96x96 RGB patches and their
    labels [N, 1, 1, 1] (torchvision's PCAM checks only that the files exist)."""
    import h5py
    rng = np.random.RandomState(1130)
    labels = np.array([0, 1, 1, 0], np.uint8)
    (folder / 'pcam').mkdir(parents=True, exist_ok=True)
    stem = folder / 'pcam' / 'camelyonpatch_level_2_split_test_'
    with h5py.File(f'{stem}x.h5', 'w') as f:
        f['x'] = rng.randint(0, 256, (len(labels), 96, 96, 3)).astype(np.uint8)
    with h5py.File(f'{stem}y.h5', 'w') as f:
        f['y'] = labels.reshape(-1, 1, 1, 1)
    return len(labels)


ZEROSHOT_STAND_INS: Dict[str, Callable[[Path], int]] = {
    'food101': _food101, 'pets': _pets, 'dtd': _dtd, 'eurosat': _eurosat, 'gtsrb': _gtsrb,
    'fgvc_aircraft': _fgvc_aircraft, 'cars': _cars, 'country211': _country211,
    'sun397': _sun397, 'caltech101': _caltech101, 'renderedsst2': _renderedsst2,
    'mnist': _mnist, 'fer2013': _fer2013, 'voc2007': _voc2007, 'pcam': _pcam,
}


def make_zeroshot_sets(root: Path) -> Dict[str, int]:
    """clip_benchmark's zero-shot datasets that stand-ins can give, each in a folder of its
    name under ``root``, as torchvision's readers expect them (a few classes each);
    returns the number of images of each."""
    return {name: make(root / name) for name, make in ZEROSHOT_STAND_INS.items()}
