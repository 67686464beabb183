"""Image-caption test sets for retrieval: MS-COCO and Flickr, Karpathy splits.

The annotation files are the ones clip_benchmark downloads (mehdidc/retrieval_annotations
1.0.0, Karpathy's test splits): ``coco_test_karpathy.json`` (COCO's captions format, 5,000
images) and ``flickr30k_test_karpathy.txt`` / ``flickr8k_test_karpathy.txt`` (a header
line, then ``<image>.jpg,<caption>`` per caption; 1,000 images). Images and captions come
in clip_benchmark's order (COCO: by image id, captions in file order; Flickr: first
appearance), so texts are numbered as clip_benchmark numbers them.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List

from mmengine.dataset import BaseDataset

from mmclip.registry import DATASETS

from .custom import DatasetLayoutError


class _CaptionDataset(BaseDataset):
    """Items ``dict(img_path=str, captions=list of str)``; the image goes through the
    pipeline, the captions stay in ``get_data_info(i)['captions']``.

    Config keys:
        data_root: the dataset's folder.
        data_prefix: the image folder relative to ``data_root`` ('' for the root).
        ann_file: the annotation file relative to ``data_root``.
        pipeline / test_mode / lazy_init: as mmengine's ``BaseDataset``.
    """

    layout = ''  # the expected layout, for error messages

    def __init__(self, data_root: str = '', data_prefix: str = '', ann_file: str = '',
                 **kwargs) -> None:
        super().__init__(data_root=data_root, ann_file=ann_file,
                         data_prefix=dict(img_path=data_prefix), **kwargs)

    def _fail(self, problem: str) -> DatasetLayoutError:
        return DatasetLayoutError(f'{problem}. Expected {self.layout.format(root=self.data_root)}'
                                  '. See docs/eval_suite.md.')

    def load_data_list(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise self._fail(f"Annotation file '{self.ann_file}' does not exist")
        captions = self._read_captions()
        if not captions:
            raise self._fail(f"'{self.ann_file}' lists no captions")
        folder = self.data_prefix['img_path']
        present = set(os.listdir(folder)) if osp.isdir(folder) else set()
        missing = [name for name in captions if name not in present]
        if missing:
            raise self._fail(f"{len(missing)} of the {len(captions)} images listed in "
                             f"'{self.ann_file}' are not in '{folder}' (e.g. {missing[:3]})")
        return [dict(img_path=osp.join(folder, name), captions=texts)
                for name, texts in captions.items()]

    def _read_captions(self) -> Dict[str, List[str]]:
        """Image file name -> its captions, in clip_benchmark's order."""
        raise NotImplementedError


@DATASETS.register_module()
class CocoCaptions(_CaptionDataset):
    """MS-COCO captions, Karpathy's 5k test split::

        data_root/coco_test_karpathy.json   COCO captions format
        data_root/val2014/COCO_val2014_000000391895.jpg ...
    """

    layout = '{root}/coco_test_karpathy.json and the images it names in {root}/val2014/'

    def __init__(self, data_root: str = '', data_prefix: str = 'val2014',
                 ann_file: str = 'coco_test_karpathy.json', **kwargs) -> None:
        super().__init__(data_root, data_prefix, ann_file, **kwargs)

    def _read_captions(self) -> Dict[str, List[str]]:
        try:
            with open(self.ann_file, encoding='utf-8') as f:
                coco = json.load(f)
            files = {int(img['id']): str(img['file_name']) for img in coco['images']}
            captions: Dict[int, List[str]] = {i: [] for i in files}
            for ann in coco['annotations']:
                captions[int(ann['image_id'])].append(str(ann['caption']))
        except (ValueError, KeyError, TypeError) as err:
            raise self._fail(f"'{self.ann_file}' is not a COCO captions file ({err!r})")
        # torchvision's CocoCaptions (clip_benchmark's reader) sorts the image ids.
        return OrderedDict((files[i], captions[i]) for i in sorted(files))


@DATASETS.register_module()
class FlickrCaptions(_CaptionDataset):
    """Flickr30k or Flickr8k, Karpathy's 1k test split::

        data_root/flickr30k_test_karpathy.txt   "image,caption" then <name>.jpg,<caption>
        data_root/<name>.jpg ...

    Config keys as ``_CaptionDataset``; ``ann_file`` defaults to Flickr30k's
    (``flickr8k_test_karpathy.txt`` for Flickr8k).
    """

    layout = ('{root}/flickr30k_test_karpathy.txt (or flickr8k_...) and the images it '
              'names in {root}/')

    def __init__(self, data_root: str = '', data_prefix: str = '',
                 ann_file: str = 'flickr30k_test_karpathy.txt', **kwargs) -> None:
        super().__init__(data_root, data_prefix, ann_file, **kwargs)

    def _read_captions(self) -> Dict[str, List[str]]:
        captions: Dict[str, List[str]] = OrderedDict()
        with open(self.ann_file, encoding='utf-8') as f:
            lines = f.read().splitlines()[1:]  # the first line is a header
        for lineno, line in enumerate(lines, 2):
            if not line.strip():
                continue
            # Captions may hold commas; the image name ends at its '.jpg,'.
            name, sep, caption = line.strip().partition('.jpg,')
            if not sep:
                raise self._fail(f"{self.ann_file}, line {lineno}: expected "
                                 f"'<image>.jpg,<caption>'; got {line.strip()[:80]!r}")
            captions.setdefault(name + '.jpg', []).append(caption)
        return captions
