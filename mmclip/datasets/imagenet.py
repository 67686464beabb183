"""ImageNet-1k in either of its two common layouts."""
import os.path as osp
import re
from typing import List, Optional, Sequence

from mmclip.registry import DATASETS

from .categories import imagenet_categories
from .custom import CustomDataset, DatasetLayoutError

SPLITS = ('train', 'val')
_WNID = re.compile(r'n\d{8}$')


@DATASETS.register_module()
class ImageNet(CustomDataset):
    """ImageNet-1k, ``split`` ``'train'`` or ``'val'``, under ``data_root``::

        data_root/
            meta/train.txt, meta/val.txt   optional: "<path relative to split/> <label>"
            train/n01440764/*.JPEG ...
            val/ILSVRC2012_val_00000001.JPEG ...        (with meta/val.txt), or
            val/n01440764/ILSVRC2012_val_00000293.JPEG  (class subfolders)

    ``meta/<split>.txt`` is used when it exists (or ``ann_file`` names another file);
    otherwise ``<split>/`` must hold all 1000 WordNet-id folders (``n01440764`` ...),
    whose sorted order is the standard class index. Fewer folders would silently shift
    every label, so that is an error.

    Config keys:
        data_root: dataset root.
        split: ``'train'`` or ``'val'``.
        ann_file: annotation file relative to ``data_root``; default ``meta/<split>.txt``
            if present.
        Other keys as ``CustomDataset``. ``classes`` defaults to the 1000 class names
        (torchvision's list, in index order; read when the dataset is built, so that
        ``import mmclip`` does not import torchvision.models).
    """

    def __init__(self,
                 data_root: str = '',
                 split: str = 'val',
                 ann_file: Optional[str] = None,
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}; got {split!r}.')
        if 'data_prefix' in kwargs:
            raise ValueError('ImageNet takes `split`, not `data_prefix`; use CustomDataset '
                             'for other folder names.')
        if ann_file is None:
            default = osp.join('meta', f'{split}.txt')
            ann_file = default if osp.isfile(osp.join(data_root, default)) else ''
        self.split = split
        kwargs.setdefault('classes', imagenet_categories())
        super().__init__(data_root=data_root, data_prefix=split, ann_file=ann_file, **kwargs)

    def expected_layouts(self, ann_file: str = '') -> str:
        return super().expected_layouts(
            ann_file or osp.join(self.data_root, 'meta', f'{self.split}.txt'))

    def _folders_in_label_order(self, folders: List[str]) -> Sequence[str]:
        wnids = [f for f in folders if _WNID.match(f)]
        if len(wnids) != 1000 or len(folders) != 1000:
            raise DatasetLayoutError(
                f"'{self.img_prefix}' has {len(folders)} subfolder(s), {len(wnids)} of them "
                'WordNet ids (n01440764 ...), and there is no '
                f"'{osp.join(self.data_root, 'meta', self.split + '.txt')}'. Expected either "
                'exactly the 1000 ImageNet-1k class folders (their sorted order gives the '
                "class indices) or the annotation file; for a subset of classes, write "
                'meta/<split>.txt with the standard indices. See docs/evaluation.md.')
        return folders
