"""ImageNet and CustomDataset: both layouts, class names, and the layout errors users hit."""
from pathlib import Path

import pytest
from mmengine.config import Config
from torchvision.models._meta import _IMAGENET_CATEGORIES

from mmclip.datasets import CustomDataset, DatasetLayoutError, ImageNet
from mmclip.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')  # datasets index files; nothing here decodes them
    return path


def _wnids(n: int = 1000):
    return [f'n{i:08d}' for i in range(n)]


def test_imagenet_with_annotation_file(tmp_path):
    for name in ('b.JPEG', 'a.JPEG', 'c d.JPEG'):
        _touch(tmp_path / 'val' / name)
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text('b.JPEG 7\na.JPEG 999\n\nc d.JPEG 0\n')
    dataset = ImageNet(data_root=str(tmp_path), split='val')
    assert len(dataset) == 3
    items = [dataset.get_data_info(i) for i in range(3)]
    assert [Path(d['img_path']).name for d in items] == ['b.JPEG', 'a.JPEG', 'c d.JPEG']
    assert [d['gt_label'] for d in items] == [7, 999, 0]
    assert [d['sample_idx'] for d in items] == [0, 1, 2]
    assert dataset.metainfo['classes'] == tuple(_IMAGENET_CATEGORIES)
    assert dataset.metainfo['classes'][0] == 'tench'


def test_imagenet_with_class_subfolders_uses_sorted_wnids(tmp_path):
    wnids = _wnids()
    for wnid in wnids:
        (tmp_path / 'val' / wnid).mkdir(parents=True)
    _touch(tmp_path / 'val' / wnids[5] / 'x.JPEG')
    _touch(tmp_path / 'val' / wnids[0] / 'y.png')
    _touch(tmp_path / 'val' / wnids[0] / 'notes.txt')  # ignored, with a warning
    dataset = ImageNet(data_root=str(tmp_path), split='val')
    assert [(Path(d['img_path']).name, d['gt_label'])
            for d in dataset.load_data_list()] == [('y.png', 0), ('x.JPEG', 5)]
    assert len(dataset.metainfo['classes']) == 1000


def test_imagenet_with_a_subset_of_class_folders_says_why(tmp_path):
    for wnid in _wnids(10):
        _touch(tmp_path / 'val' / wnid / 'x.JPEG')
    with pytest.raises(DatasetLayoutError,
                       match=r'10 subfolder\(s\).*1000 ImageNet-1k class folders'):
        ImageNet(data_root=str(tmp_path), split='val')


def test_flat_val_folder_without_annotations_says_which_layouts(tmp_path):
    for i in range(3):
        _touch(tmp_path / 'val' / f'ILSVRC2012_val_{i:08d}.JPEG')
    with pytest.raises(DatasetLayoutError,
                       match=r"(?s)has 3 image\(s\) but no class subfolders.*"
                       r'one subfolder per class.*meta/val.txt with one'):
        ImageNet(data_root=str(tmp_path), split='val')


def test_missing_data_root_names_it(tmp_path):
    missing = tmp_path / 'nowhere'
    with pytest.raises(DatasetLayoutError, match=f"data_root '{missing}' does not exist"):
        ImageNet(data_root=str(missing), split='val')


def test_annotation_line_pointing_to_missing_file_names_the_entry(tmp_path):
    _touch(tmp_path / 'val' / 'a.JPEG')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text('a.JPEG 1\n\ngone.JPEG 2\n')
    with pytest.raises(DatasetLayoutError,
                       match=r'(?s)1 image\(s\) listed.*line 3: .*gone\.JPEG'):
        ImageNet(data_root=str(tmp_path), split='val')


@pytest.mark.parametrize('label', ['1000', '-1'])
def test_label_out_of_range(tmp_path, label):
    _touch(tmp_path / 'val' / 'a.JPEG')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text(f'a.JPEG {label}\n')
    with pytest.raises(DatasetLayoutError,
                       match=rf'line 1: label {label} is out of range.*\[0, 999\]'):
        ImageNet(data_root=str(tmp_path), split='val')


def test_malformed_annotation_line(tmp_path):
    _touch(tmp_path / 'val' / 'a.JPEG')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text('a.JPEG\n')
    with pytest.raises(DatasetLayoutError,
                       match=r"line 1: expected '<image path> <integer label>'"):
        ImageNet(data_root=str(tmp_path), split='val')


def test_bad_split_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"\('train', 'val'\)"):
        ImageNet(data_root=str(tmp_path), split='test')


def test_custom_dataset_subfolders_and_class_order(tmp_path):
    for cls, names in {'dog': ['1.jpg', '2.jpg'], 'cat': ['3.png']}.items():
        for name in names:
            _touch(tmp_path / 'data' / cls / name)
    sorted_ds = CustomDataset(data_root=str(tmp_path), data_prefix='data')
    assert sorted_ds.metainfo['classes'] == ('cat', 'dog')
    assert [d['gt_label'] for d in sorted_ds.load_data_list()] == [0, 1, 1]
    ordered = CustomDataset(data_root=str(tmp_path), data_prefix='data', classes=['dog', 'cat'])
    assert [(Path(d['img_path']).name, d['gt_label']) for d in ordered.load_data_list()] == [
        ('1.jpg', 0), ('2.jpg', 0), ('3.png', 1)]
    with pytest.raises(DatasetLayoutError, match=r"missing folders \['bird'\]"):
        CustomDataset(data_root=str(tmp_path), data_prefix='data', classes=['dog', 'cat', 'bird'])


def test_custom_dataset_annotation_file_with_class_file(tmp_path):
    _touch(tmp_path / 'imgs' / 'x.jpg')
    (tmp_path / 'classes.txt').write_text('zero\none\n')
    (tmp_path / 'ann.txt').write_text('x.jpg 1\n')
    dataset = DATASETS.build(dict(type='CustomDataset', data_root=str(tmp_path),
                                  data_prefix='imgs', ann_file='ann.txt',
                                  classes=str(tmp_path / 'classes.txt')))
    assert dataset.metainfo['classes'] == ('zero', 'one')
    assert dataset.get_data_info(0)['gt_label'] == 1
    (tmp_path / 'ann.txt').write_text('x.jpg 2\n')
    with pytest.raises(DatasetLayoutError, match=r'label 2 .* \[0, 1\]'):
        CustomDataset(data_root=str(tmp_path), data_prefix='imgs', ann_file='ann.txt',
                      classes=str(tmp_path / 'classes.txt'))


def test_seed_config_dataset_builds_from_registry(tmp_path):
    cfg = Config.fromfile(ROOT / 'configs' / 'clip' / 'vit-base-p32_pt-64xb64_in1k.py')
    _touch(tmp_path / 'val' / 'a.JPEG')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text('a.JPEG 3\n')
    dataset_cfg = dict(cfg.test_dataloader.dataset, data_root=str(tmp_path), pipeline=[])
    dataset = DATASETS.build(dataset_cfg)
    assert isinstance(dataset, ImageNet) and len(dataset) == 1
    assert dataset[0]['gt_label'] == 3
