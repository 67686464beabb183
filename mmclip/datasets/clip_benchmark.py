"""clip_benchmark's zero-shot classification datasets, read by clip_benchmark itself.

For CIFAR, Food-101, Flowers, Pets, ... clip_benchmark (1.6.2) builds torchvision's readers
of the local files, with its own splits, class names and prompt templates. Taking all
four from its ``build_dataset`` (``download=False``) is what makes the numbers comparable
with open_clip's published table; mmclip only feeds the images through the model's own
preprocessing. clip_benchmark reads SVHN only through TensorFlow Datasets (``vtab/svhn``);
mmclip reads the same 26,032 test images with torchvision's reader (which checks the
official file's MD5), with clip_benchmark's SVHN class names and templates. Needs the
``evaluation`` extra (``pip install -e ".[evaluation]"``).
"""
import json
import os.path as osp
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from mmclip.registry import DATASETS

from .custom import DatasetLayoutError
from .transforms import pil_to_rgb

# clip_benchmark name -> (the path under the dataset's folder that must exist, the layout
# torchvision / clip_benchmark read there: what their download would have created).
LAYOUTS: Dict[str, Tuple[str, str]] = {
    'cifar10': ('cifar-10-batches-py', 'cifar-10-batches-py/ (cifar-10-python.tar.gz extracted)'),
    'cifar100': ('cifar-100-python', 'cifar-100-python/ (cifar-100-python.tar.gz extracted)'),
    'stl10': ('stl10_binary', 'stl10_binary/ (stl10_binary.tar.gz extracted)'),
    'food101': ('food-101', 'food-101/images/<class>/*.jpg and food-101/meta/test.json'),
    'flowers': ('flowers-102', 'flowers-102/jpg/*.jpg, imagelabels.mat and setid.mat'),
    'pets': ('oxford-iiit-pet', 'oxford-iiit-pet/images/*.jpg and annotations/test.txt'),
    'dtd': ('dtd', 'dtd/dtd/images/<class>/*.jpg and dtd/dtd/labels/test1.txt'),
    'eurosat': ('eurosat', 'eurosat/2750/<class>/*.jpg (all of EuroSAT RGB is used)'),
    'gtsrb': ('gtsrb', 'gtsrb/GTSRB/Final_Test/Images/*.ppm and gtsrb/GT-final_test.csv'),
    'fgvc_aircraft': ('fgvc-aircraft-2013b',
                      'fgvc-aircraft-2013b/data/images/*.jpg and data/images_variant_test.txt'),
    'cars': ('stanford_cars', 'stanford_cars/cars_test/*.jpg, devkit/ and '
             'cars_test_annos_withlabels.mat'),
    'country211': ('country211', 'country211/test/<country code>/*.jpg'),
    'sun397': ('SUN397', 'SUN397/<letter>/<class>/*.jpg and SUN397/ClassName.txt (all used)'),
    'caltech101': ('caltech101', 'caltech101/101_ObjectCategories/<class>/*.jpg'),
    'renderedsst2': ('rendered-sst2', 'rendered-sst2/test/<negative|positive>/*.png'),
    'mnist': ('MNIST/raw', 'MNIST/raw/t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte'),
    'fer2013': ('test', 'test/<emotion>/*.jpg (the Kaggle msambare/fer2013 archive)'),
    'pcam': ('pcam', 'pcam/camelyonpatch_level_2_split_test_{x,y}.h5 (needs h5py)'),
    'svhn': ('test_32x32.mat', 'test_32x32.mat'),
    'voc2007': ('VOCdevkit', 'VOCdevkit/VOC2007/ (JPEGImages, Annotations, ImageSets)'),
}


def _torchvision_svhn(root: str, split: str) -> Any:
    from torchvision.datasets import SVHN
    return SVHN(root, split=split, download=False)


# Datasets clip_benchmark reads only through TensorFlow Datasets, read here by torchvision.
TORCHVISION_READERS = {'svhn': _torchvision_svhn}


def clip_benchmark_prompts(name: str) -> Tuple[List[str], List[str]]:
    """clip_benchmark's packaged English class names and templates of ``name``."""
    import clip_benchmark.datasets as package
    folder = osp.dirname(package.__file__)
    with open(osp.join(folder, 'en_classnames.json'), encoding='utf-8') as f:
        classes = json.load(f)[name]
    with open(osp.join(folder, 'en_zeroshot_classification_templates.json'),
              encoding='utf-8') as f:
        templates = json.load(f)[name]
    return classes, templates


def clip_benchmark_templates(templates: Sequence[str]) -> List[str]:
    """clip_benchmark's ``{c}`` templates in mmclip's ``{}`` form."""
    return [t.replace('{c}', '{}') for t in templates]


@DATASETS.register_module()
class ClipBenchmarkDataset(BaseDataset):
    """A clip_benchmark zero-shot classification dataset (``LAYOUTS`` names them).

    Its ``metainfo`` holds clip_benchmark's ``classes`` and ``templates`` (as mmclip
    templates, ``{}`` for the class name). Items are decoded by clip_benchmark's reader
    (PIL), converted as ``LoadImageFromFile`` converts a file (RGB, alpha dropped), then
    go through ``pipeline`` without its ``LoadImageFromFile`` step.

    Config keys:
        name: clip_benchmark's dataset name (``'cifar10'`` ...).
        data_root: the dataset's folder (clip_benchmark's ``--dataset_root``).
        split: clip_benchmark's split (default ``'test'``).
        pipeline / lazy_init / serialize_data: as mmengine's ``BaseDataset``.
    """

    def __init__(self, name: str, data_root: str = '', split: str = 'test',
                 pipeline: Sequence = (), **kwargs) -> None:
        if name not in LAYOUTS:
            raise ValueError(f'Unknown clip_benchmark dataset {name!r}; one of '
                             f'{sorted(LAYOUTS)}.')
        self.name, self.split = name, split
        steps = [s for s in pipeline
                 if not (isinstance(s, dict) and s.get('type') == 'LoadImageFromFile')]
        super().__init__(data_root=data_root, pipeline=steps, **kwargs)

    def expected_layout(self) -> str:
        return (f'Expected {osp.join(self.data_root, LAYOUTS[self.name][1])}, as torchvision '
                'and clip_benchmark read it. See docs/eval_suite.md.')

    def load_data_list(self) -> List[dict]:
        required = osp.join(self.data_root, LAYOUTS[self.name][0])
        # Checked first: some of clip_benchmark's readers create or fetch a missing folder.
        if not osp.exists(required):
            raise DatasetLayoutError(f"'{required}' does not exist. {self.expected_layout()}")
        try:
            from clip_benchmark.datasets.builder import build_dataset
        except ImportError as err:
            raise ImportError(f'The {self.name} dataset is read by clip_benchmark: pip install '
                              f'-e ".[evaluation]" ({err}).') from None
        try:
            if self.name in TORCHVISION_READERS:
                self._source = TORCHVISION_READERS[self.name](self.data_root, self.split)
                classes, templates = clip_benchmark_prompts(self.name)
            else:
                self._source = build_dataset(self.name, root=self.data_root, transform=None,
                                             split=self.split, download=False)
                classes, templates = self._source.classes, self._source.templates
        except (RuntimeError, OSError, ValueError, KeyError, IndexError,
                AssertionError) as err:
            raise DatasetLayoutError(f"clip_benchmark could not read {self.name} from "
                                     f"'{self.data_root}' ({type(err).__name__}: {err}). "
                                     + self.expected_layout()) from None
        self._metainfo['classes'] = tuple(classes)
        self._metainfo['templates'] = tuple(clip_benchmark_templates(templates))
        return [dict(source_index=i) for i in range(len(self._source))]

    def prepare_data(self, idx: int) -> dict:
        index = self.get_data_info(idx)['source_index']
        img, label = self._source[index]
        rgb = pil_to_rgb(img)
        results = dict(img=np.ascontiguousarray(rgb[..., ::-1]), img_shape=rgb.shape[:2],
                       ori_shape=rgb.shape[:2], gt_label=int(label), sample_idx=idx,
                       img_path=f'{self.name}[{index}]', load_error=None)
        return self.pipeline(results)
