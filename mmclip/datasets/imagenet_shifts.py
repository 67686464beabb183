"""The ImageNet distribution-shift test sets, each in the layout its authors ship.

A model with ImageNet-1k's 1000 outputs is scored on all of them. ImageNet-V2 and
ImageNet-Sketch use all 1000 classes. ImageNet-R, ImageNet-A and ObjectNet cover fewer
classes; their ``metainfo['class_map']`` gives, for each of the dataset's classes, the
ImageNet-1k outputs that stand for it, and the metrics score the logits restricted to
those outputs (the maximum where several stand for one class, as for ObjectNet). This is
the standard protocol (timm's ``results-imagenet-{r,a}.csv``, clip_benchmark, WiSE-FT):
an unrestricted argmax would count a prediction of a class the set does not hold as a
miss. A model whose outputs already are the dataset's classes (a zero-shot head built for
them) is scored as it is. The class lists are data files in ``meta/`` (see its README for
their sources).
"""
import json
import os.path as osp
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

from mmclip.registry import DATASETS

from .categories import imagenet_categories
from .custom import CustomDataset, DatasetLayoutError

META_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'meta')
# ObjectNet's images carry a thin red frame (ObjectNet's README); WiSE-FT's reference
# loader (mlfoundations/wise-ft, src/datasets/objectnet.py) crops 2 pixels per side.
OBJECTNET_BORDER = 2


def _read_lines(name: str) -> Tuple[str, ...]:
    with open(osp.join(META_DIR, name), encoding='utf-8') as f:
        return tuple(line.strip() for line in f if line.strip())


@lru_cache(maxsize=None)
def imagenet_wnids() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (``n01440764`` = 0)."""
    return _read_lines('imagenet1k_wnids.txt')


@lru_cache(maxsize=None)
def subset_wnids(name: str) -> Tuple[str, ...]:
    """The 200 sorted WordNet ids of ``'imagenet_r'`` or ``'imagenet_a'``."""
    return _read_lines(f'{name}_wnids.txt')


@lru_cache(maxsize=None)
def objectnet_classes() -> Tuple[dict, ...]:
    """ObjectNet's 113 ImageNet classes, sorted by folder: dicts with ``folder``,
    ``name``, ``imagenet_names`` and ``imagenet_indices``."""
    with open(osp.join(META_DIR, 'objectnet_imagenet_classes.json'), encoding='utf-8') as f:
        return tuple(json.load(f))


def _check_folders(dataset: CustomDataset, found: List[str], expected: Sequence[str],
                   what: str) -> None:
    """Raise unless the class subfolders are exactly ``expected``: one missing would drop
    a class silently, an unknown one means the root points at the wrong folder."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise DatasetLayoutError(
            f"'{dataset.img_prefix}' does not hold {what}: {len(missing)} expected "
            f'folder(s) missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}. '
            + dataset.expected_layouts())


@DATASETS.register_module()
class ImageNetV2(CustomDataset):
    """ImageNet-V2 (Recht et al. 2019), any of its three variants, as its archives
    extract (``imagenetv2-matched-frequency-format-val``, ``imagenetv2-threshold0.7-
    format-val``, ``imagenetv2-top-images-format-val``)::

        data_root/0/*.jpeg ... data_root/999/*.jpeg

    Folders are named by ImageNet-1k class index (not WordNet id); the label is that
    number. All 1000 folders must be there (each variant has 10 images per class).

    Config keys: ``data_root``, then as ``CustomDataset``; ``classes`` defaults to the
    1000 ImageNet-1k names.
    """

    def __init__(self, data_root: str = '', **kwargs) -> None:
        kwargs.setdefault('classes', imagenet_categories())
        super().__init__(data_root=data_root, **kwargs)

    def expected_layouts(self, ann_file: str = '') -> str:
        return (f'Expected {self.img_prefix}/<class index 0..999>/<image>.jpeg, the 1000 folders '
                'of an extracted ImageNet-V2 archive. See docs/eval_suite.md.')

    def _folders_in_label_order(self, folders: List[str]) -> Sequence[str]:
        expected = [str(i) for i in range(1000)]
        _check_folders(self, folders, expected, 'ImageNet-V2')
        return expected


@DATASETS.register_module()
class ImageNetSketch(CustomDataset):
    """ImageNet-Sketch (Wang et al. 2019), the ``sketch`` folder of its archive::

        data_root/n01440764/*.JPEG ... (the 1000 ImageNet-1k WordNet ids)

    Labels follow the sorted WordNet ids, as for ImageNet-1k.

    Config keys: ``data_root``, then as ``CustomDataset``.
    """

    def __init__(self, data_root: str = '', **kwargs) -> None:
        kwargs.setdefault('classes', imagenet_categories())
        super().__init__(data_root=data_root, **kwargs)

    def expected_layouts(self, ann_file: str = '') -> str:
        return (f'Expected {self.img_prefix}/<WordNet id>/<image>, the 1000 ImageNet-1k class '
                'folders (n01440764 ...) of the "sketch" folder of ImageNet-Sketch. See '
                'docs/eval_suite.md.')

    def _folders_in_label_order(self, folders: List[str]) -> Sequence[str]:
        _check_folders(self, folders, imagenet_wnids(), 'ImageNet-Sketch')
        return list(imagenet_wnids())


class _ImageNetSubset(CustomDataset):
    """200 ImageNet-1k classes in WordNet-id folders; labels 0..199 follow the sorted ids,
    ``class_map[i]`` is ``(ImageNet-1k index of class i,)``."""

    subset = ''  # the name of the wnid list in meta/
    title = ''

    def __init__(self, data_root: str = '', metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        wnids = subset_wnids(self.subset)
        index = {w: i for i, w in enumerate(imagenet_wnids())}
        names = imagenet_categories()
        metainfo = dict(metainfo or {})
        metainfo['class_map'] = tuple((index[w], ) for w in wnids)
        kwargs.setdefault('classes', [names[index[w]] for w in wnids])
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def expected_layouts(self, ann_file: str = '') -> str:
        return (f'Expected {self.img_prefix}/<WordNet id>/<image>, the 200 class folders of '
                f'{self.title} (n0...; listed in mmclip/datasets/meta/{self.subset}_wnids.txt).'
                ' See docs/eval_suite.md.')

    def _folders_in_label_order(self, folders: List[str]) -> Sequence[str]:
        wnids = subset_wnids(self.subset)
        _check_folders(self, folders, wnids, self.title)
        return list(wnids)


@DATASETS.register_module()
class ImageNetR(_ImageNetSubset):
    """ImageNet-R (renditions; Hendrycks et al. 2021), the ``imagenet-r`` folder of
    its archive: 200 WordNet-id folders. ``metainfo['class_map']`` restricts a
    1000-way classifier to them. Config keys: ``data_root``, then as ``CustomDataset``."""

    subset = 'imagenet_r'
    title = 'ImageNet-R'


@DATASETS.register_module()
class ImageNetA(_ImageNetSubset):
    """ImageNet-A (natural adversarial examples; Hendrycks et al. 2021), the
    ``imagenet-a`` folder of its archive: 200 WordNet-id folders (and a README.txt).
    ``metainfo['class_map']`` restricts a 1000-way classifier to them. Config keys:
    ``data_root``, then as ``CustomDataset``."""

    subset = 'imagenet_a'
    title = 'ImageNet-A'


@DATASETS.register_module()
class ObjectNet(CustomDataset):
    """ObjectNet 1.0 (Barbu et al. 2019), its 113 classes that overlap ImageNet-1k::

        data_root/images/<folder>/*.png   (data_root: the extracted objectnet-1.0/;
                                           313 folders, of which 113 are used)

    Labels 0..112 follow the sorted folder names; ``classes`` are ObjectNet's labels
    ("Alarm clock" ...); ``class_map[i]`` lists the ImageNet-1k outputs of class i (125
    in all, through ObjectNet's published mapping), whose maximum scores it for a
    1000-way classifier. ``border`` pixels are cropped from each side before the
    pipeline's first step after loading: the images carry a red frame.

    Config keys:
        data_root: the ``objectnet-1.0`` folder.
        border: pixels cropped from each side (default 2, WiSE-FT's loader; 0 keeps
            the frame, as clip_benchmark 1.6.2 does).
        Other keys as ``CustomDataset``.
    """

    def __init__(self, data_root: str = '', border: int = OBJECTNET_BORDER,
                 metainfo: Optional[dict] = None, pipeline: Sequence = (),
                 **kwargs) -> None:
        if not isinstance(border, int) or border < 0:
            raise ValueError(f'border must be a non-negative int; got {border!r}.')
        classes = objectnet_classes()
        metainfo = dict(metainfo or {})
        metainfo['class_map'] = tuple(tuple(c['imagenet_indices']) for c in classes)
        kwargs.setdefault('classes', [c['name'] for c in classes])
        self.border = border
        super().__init__(data_root=data_root, data_prefix='images', metainfo=metainfo,
                         pipeline=_with_border_crop(pipeline, border), **kwargs)

    def expected_layouts(self, ann_file: str = '') -> str:
        return (f'Expected {self.img_prefix}/<class folder>/<image>.png, the images/ folder of the '
                'extracted objectnet-1.0 archive with (at least) the 113 folders listed '
                'in mmclip/datasets/meta/objectnet_imagenet_classes.json. See '
                'docs/eval_suite.md.')

    def _folders_in_label_order(self, folders: List[str]) -> Sequence[str]:
        wanted = [c['folder'] for c in objectnet_classes()]
        # The other 200 ObjectNet classes have no ImageNet counterpart: not evaluated.
        _check_folders(self, [f for f in folders if f in wanted] or folders, wanted,
                       'the 113 ObjectNet classes that overlap ImageNet-1k')
        return wanted


def _with_border_crop(pipeline: Sequence, border: int) -> list:
    """``pipeline`` with ``CropBorder(border)`` right after its ``LoadImageFromFile``."""
    steps = list(pipeline)
    if border == 0:
        return steps
    for i, step in enumerate(steps):
        if isinstance(step, dict) and step.get('type') == 'LoadImageFromFile':
            # _scope_: found in mmclip's registry whatever the caller's default scope.
            crop = dict(type='CropBorder', pixels=border, _scope_='mmclip')
            return steps[:i + 1] + [crop] + steps[i + 1:]
    if steps:
        raise ValueError('ObjectNet crops its images\' border after LoadImageFromFile; the '
                         'pipeline has none (set border=0 to keep the border).')
    return steps
