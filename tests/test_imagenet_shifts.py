"""ImageNet-V2, -Sketch, -R, -A and ObjectNet: layouts, labels, class lists and masks.

Each dataset reads a tiny folder made here in its real on-disk layout. The shipped class
lists are compared with independent copies (timm's data files, clip_benchmark's source);
the masked top-1 of a (tiny, random) timm ViT is computed by hand from timm's logits and
compared with what mmclip's evaluation path gives.
"""
import ast
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from PIL import Image

import mmclip
from mmclip.datasets import (
    DatasetLayoutError,
    ImageNetA,
    ImageNetR,
    ImageNetSketch,
    ImageNetV2,
    ObjectNet,
)
from mmclip.datasets.imagenet_shifts import imagenet_wnids, objectnet_classes, subset_wnids
from mmclip.evaluation import Accuracy
from mmclip.evaluation.metrics.benchmark import project_scores
from mmclip.registry import DATASETS, MODELS
from mmclip.structures import DataSample

TIMM_INFO = Path(timm.__file__).parent / 'data' / '_info'
PHOTOS = sorted(p for p in (Path(__file__).parent / 'data' / 'images').iterdir()
                if p.suffix in ('.png', '.jpg'))


def _lines(path: Path):
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _clip_benchmark_list(name: str):
    """A wnid list as written in clip_benchmark's builder.py (read, not imported)."""
    spec = importlib.util.find_spec('clip_benchmark')
    if spec is None:
        pytest.skip('clip-benchmark is not installed (pip install ".[evaluation]")')
    source = (Path(spec.origin).parent / 'datasets' / 'builder.py').read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == name:
            return sorted(ast.literal_eval(node.value))
    raise AssertionError(f'{name} not found in clip_benchmark')


def _image(path: Path, size=(40, 30), color=(10, 200, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, color).save(path)
    return path


# ---- the shipped class lists ----------------------------------------------------------------
def test_class_lists_equal_timms_and_clip_benchmarks():
    assert list(imagenet_wnids()) == _lines(TIMM_INFO / 'imagenet_synsets.txt')
    for name in ('imagenet_r', 'imagenet_a'):
        wnids = list(subset_wnids(name))
        assert len(wnids) == 200 and wnids == sorted(set(wnids))
        assert wnids == sorted(_lines(TIMM_INFO / f'{name}_synsets.txt'))
        assert wnids == _clip_benchmark_list(f'{name}_wnids')


def test_r_and_a_masks_are_timms_indices():
    for cls, name in ((ImageNetR, 'imagenet_r'), (ImageNetA, 'imagenet_a')):
        class_map = cls(lazy_init=True).metainfo['class_map']
        assert [i for (i, ) in class_map] == [int(x) for x in
                                              _lines(TIMM_INFO / f'{name}_indices.txt')]


def test_objectnet_mapping_names_the_imagenet_classes_of_its_indices():
    lemma = dict(line.split('\t') for line in _lines(TIMM_INFO / 'imagenet_synset_to_lemma.txt'))
    names = [lemma[w] for w in imagenet_wnids()]
    classes = objectnet_classes()
    assert len(classes) == 113
    folders = [c['folder'] for c in classes]
    assert folders == sorted(set(folders))
    indices = [i for c in classes for i in c['imagenet_indices']]
    assert len(indices) == len(set(indices)) == 125  # no ImageNet class serves two
    for c in classes:
        assert [names[i] for i in c['imagenet_indices']] == c['imagenet_names'], c
    alarm = classes[0]
    assert (alarm['folder'], alarm['name'], alarm['imagenet_indices']) == (
        'alarm_clock', 'Alarm clock', [409, 530])  # analog clock, digital clock


# ---- layouts and labels ---------------------------------------------------------------------
def test_imagenet_v2_labels_are_the_folder_numbers(tmp_path):
    root = tmp_path / 'imagenetv2-matched-frequency-format-val'
    for i in range(1000):
        (root / str(i)).mkdir(parents=True)
    for label in (0, 7, 10, 999):
        _image(root / str(label) / f'{label:04d}abc.jpeg')
    dataset = DATASETS.build(dict(type='ImageNetV2', data_root=str(root)))
    items = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert [(Path(d['img_path']).parent.name, d['gt_label']) for d in items] == [
        ('0', 0), ('7', 7), ('10', 10), ('999', 999)]  # numeric, not string, order
    assert len(dataset.metainfo['classes']) == 1000
    assert 'class_map' not in dataset.metainfo


def test_imagenet_v2_refuses_wordnet_folders_and_gaps(tmp_path):
    wnid_root = tmp_path / 'wnids'
    for wnid in imagenet_wnids():
        (wnid_root / wnid).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r'ImageNet-V2.*<class index 0\.\.999>'):
        ImageNetV2(data_root=str(wnid_root))
    gap_root = tmp_path / 'gap'
    for i in range(999):
        (gap_root / str(i)).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"1 expected folder\(s\) missing \['999'\]"):
        ImageNetV2(data_root=str(gap_root))


def test_imagenet_sketch_uses_the_sorted_wordnet_ids(tmp_path):
    root = tmp_path / 'sketch'
    for wnid in imagenet_wnids():
        (root / wnid).mkdir(parents=True)
    _image(root / 'n01440764' / 'sketch_0.JPEG')
    _image(root / imagenet_wnids()[500] / 'sketch_1.JPEG')
    dataset = ImageNetSketch(data_root=str(root))
    assert [d['gt_label'] for d in dataset.load_data_list()] == [0, 500]
    (root / imagenet_wnids()[3]).rmdir()
    with pytest.raises(DatasetLayoutError, match='ImageNet-Sketch'):
        ImageNetSketch(data_root=str(root))


@pytest.mark.parametrize('cls,name', [(ImageNetR, 'imagenet_r'), (ImageNetA, 'imagenet_a')])
def test_r_and_a_labels_and_class_map(tmp_path, cls, name):
    root = tmp_path / name.replace('_', '-')
    wnids = subset_wnids(name)
    for wnid in wnids:
        (root / wnid).mkdir(parents=True)
    (root / 'README.txt').write_text('the archive ships one')
    _image(root / wnids[0] / 'a.jpg')
    _image(root / wnids[199] / 'b.jpg')
    dataset = DATASETS.build(dict(type=cls.__name__, data_root=str(root)))
    assert [d['gt_label'] for d in dataset.load_data_list()] == [0, 199]
    meta = dataset.metainfo
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    assert meta['class_map'] == tuple((index[w], ) for w in wnids)
    assert len(meta['classes']) == 200
    assert meta['classes'][0] == ImageNetSketch(lazy_init=True).metainfo['classes'][
        index[wnids[0]]]
    # Pointing at the folder above (or at ImageNet) is refused with the expected layout.
    with pytest.raises(DatasetLayoutError, match='the 200 class folders of ImageNet-'):
        cls(data_root=str(tmp_path))


def _objectnet_root(tmp_path: Path) -> Path:
    root = tmp_path / 'objectnet-1.0'
    for c in objectnet_classes():
        (root / 'images' / c['folder']).mkdir(parents=True)
    (root / 'images' / 'squeegee').mkdir()  # one of the 200 classes without ImageNet twin
    (root / 'mappings').mkdir()
    return root


def _bordered(path: Path, width=50, height=40) -> Path:
    """Green image with a 2-pixel red frame, as ObjectNet's (thin) frame."""
    img = np.zeros((height, width, 3), np.uint8)
    img[...] = (255, 0, 0)
    img[2:-2, 2:-2] = (0, 255, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def test_objectnet_labels_class_map_and_border_crop(tmp_path):
    root = _objectnet_root(tmp_path)
    _bordered(root / 'images' / 'alarm_clock' / 'x.png')
    _bordered(root / 'images' / 'wok' / 'y.png')
    _bordered(root / 'images' / 'squeegee' / 'z.png')  # not evaluated
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    with DefaultScope.overwrite_default_scope('mmclip'):
        dataset = DATASETS.build(dict(type='ObjectNet', data_root=str(root), pipeline=pipeline))
        unchanged = ObjectNet(data_root=str(root), pipeline=pipeline, border=0)
    assert len(dataset) == 2
    assert [d['gt_label'] for d in dataset.load_data_list()] == [0, 112]
    meta = dataset.metainfo
    assert meta['classes'][0] == 'Alarm clock' and len(meta['classes']) == 113
    assert meta['class_map'][0] == (409, 530)
    img = dataset[0]['inputs']  # [3, H, W] uint8 BGR
    assert tuple(img.shape) == (3, 36, 46)
    assert (img[1] == 255).all() and (img[2] == 0).all()  # all green: the frame is gone
    assert tuple(unchanged[0]['inputs'].shape) == (3, 40, 50)


def test_objectnet_names_missing_class_folders(tmp_path):
    root = _objectnet_root(tmp_path)
    (root / 'images' / 'wok').rmdir()
    with pytest.raises(DatasetLayoutError, match=r"missing \['wok'\]"):
        ObjectNet(data_root=str(root))
    with pytest.raises(DatasetLayoutError, match="images/images' does not exist. Expected "):
        ObjectNet(data_root=str(root / 'images'))  # one level too deep: no images/ inside


# ---- the mask in the metrics -----------------------------------------------------------------
def test_project_scores_restricts_and_takes_the_maximum():
    scores = torch.tensor([[0.0, 5.0, 1.0, 2.0, 3.0]])
    assert project_scores(scores, ((2, ), (3, )), 2).tolist() == [[1.0, 2.0]]
    assert project_scores(scores, ((0, 4), (2, 3)), 2).tolist() == [[3.0, 2.0]]
    # A head built for the dataset's own classes is scored as it is.
    assert project_scores(scores[:, :2], ((0, 4), (2, 3)), 2).tolist() == [[0.0, 5.0]]
    with pytest.raises(ValueError, match='outputs up to 9'):
        project_scores(scores, ((9, ), (1, )), 2)


def test_accuracy_scores_the_masked_logits():
    # Output 1 wins overall but is not one of the dataset's classes (outputs 2, 3, 4).
    scores = torch.tensor([[0.0, 9.0, 1.0, 2.0, 3.0], [0.0, 9.0, 4.0, 2.0, 3.0]])
    samples = [DataSample().set_gt_label(label).set_pred_score(s)
               for label, s in zip((2, 0), scores)]
    evaluator = Evaluator([Accuracy(topk=(1, 2), mean_recall=True)])
    evaluator.dataset_meta = dict(classes=('c', 'd', 'e'), class_map=((2, ), (3, ), (4, )))
    evaluator.process(samples)
    results = evaluator.evaluate(2)
    assert results['accuracy/top1'] == 100.0  # 1 is not a candidate; 4 and 2 win
    assert results['accuracy/top2'] == 100.0
    assert results['accuracy/mean_per_class_recall'] == 100.0
    unmasked = Evaluator([Accuracy()])
    unmasked.dataset_meta = dict(classes=tuple('abcde'))
    unmasked.process(samples)
    assert unmasked.evaluate(2)['accuracy/top1'] == 0.0


# ---- a zoo classifier on the masked sets equals masking timm's logits by hand ---------------
@pytest.fixture(scope='module')
def tiny_timm(tmp_path_factory):
    """(a random 2-layer, 64-wide timm CLIP ViT with 1000 outputs, mmclip's config of it)."""
    from conftest import write_tiny_config
    from mmengine.config import Config

    torch.manual_seed(0)
    reference = timm.create_model('vit_base_patch16_clip_224', pretrained=False, img_size=64,
                                  embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0).eval()
    return reference, Config.fromfile(write_tiny_config(tmp_path_factory.mktemp('cfg')))


@torch.no_grad()
def _spread_and_convert(reference, model, inputs: torch.Tensor) -> None:
    """A random ViT gives every image nearly the same feature, so its head would rank
    them alike: centre the head on these images' mean feature, then convert the weights
    into mmclip's model through the loader's conversion table (strict)."""
    from mmclip.checkpoint import convert_timm_state_dict

    feats = reference.forward_head(reference.forward_features(inputs), pre_logits=True)
    weight = torch.randn(reference.head.weight.shape)
    weight *= 3 / ((feats - feats.mean(0)) @ weight.T).std()
    reference.head.weight.copy_(weight)
    reference.head.bias.copy_(-weight @ feats.mean(0))
    model.load_state_dict(convert_timm_state_dict(reference.state_dict()), strict=True)


def _fill_with_photos(root: Path, folders, per_folder: int = 2):
    k = 0
    for folder in folders:
        for j in range(per_folder):
            img = Image.open(PHOTOS[k % len(PHOTOS)]).convert('RGB')
            img.save(root / folder / f'{j}.jpg')
            k += 1


def _masked_set(kind: str, root: Path):
    if kind == 'objectnet':
        classes = objectnet_classes()
        for c in classes:
            (root / 'images' / c['folder']).mkdir(parents=True)
        folders = ['images/' + classes[i]['folder'] for i in (0, 18, 59, 112)]
        _fill_with_photos(root, folders)
        return 'ObjectNet', [c['imagenet_indices'] for c in classes]
    wnids = subset_wnids(kind)
    for wnid in wnids:
        (root / wnid).mkdir(parents=True)
    _fill_with_photos(root, [wnids[i] for i in (0, 50, 120, 199)])
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    return {'imagenet_r': 'ImageNetR', 'imagenet_a': 'ImageNetA'}[kind], [
        [index[w]] for w in wnids]


@pytest.mark.parametrize('kind', ['imagenet_r', 'imagenet_a', 'objectnet'])
def test_zoo_classifier_top1_equals_masking_timms_logits(tiny_timm, tmp_path, kind):
    from mmengine.dataset import pseudo_collate

    reference, cfg = tiny_timm
    dataset_type, outputs = _masked_set(kind, tmp_path)
    with DefaultScope.overwrite_default_scope('mmclip'):
        dataset = DATASETS.build(dict(type=dataset_type, data_root=str(tmp_path),
                                      pipeline=cfg.test_dataloader.dataset.pipeline))
    model = MODELS.build(cfg.model).eval()
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(len(dataset))]))
    _spread_and_convert(reference, model, batch['inputs'])
    with torch.no_grad():
        # By hand, as WiSE-FT's project_logits: per class the max of its ImageNet logits.
        timm_logits = reference(batch['inputs'])
        masked = torch.stack([timm_logits[:, o].max(dim=1).values for o in outputs], dim=1)
        predictions = model(batch['inputs'], batch['data_samples'], mode='predict')
    labels = torch.tensor([d['gt_label'] for d in dataset.load_data_list()])
    expected = 100.0 * (masked.argmax(dim=1) == labels).double().mean().item()
    evaluator = Evaluator([Accuracy(topk=(1, 5))])
    evaluator.dataset_meta = dataset.metainfo
    evaluator.process(predictions)
    results = evaluator.evaluate(len(dataset))
    assert results['accuracy/top1'] == pytest.approx(expected)
    # Per image too: the masked prediction of mmclip's scores is timm's masked argmax.
    ours = torch.stack([project_scores(p.pred_score, dataset.metainfo['class_map'], None)
                        for p in predictions])
    assert ours.argmax(dim=1).tolist() == masked.argmax(dim=1).tolist()
    assert len(set(masked.argmax(dim=1).tolist())) > 1
    # The test can fail: the unmasked argmax of a random model lands outside the subset.
    candidates = {i for o in outputs for i in o}
    assert any(int(p) not in candidates for p in timm_logits.argmax(dim=1))
    top2 = masked.topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-3  # no near-tie decides the comparison


def test_tools_test_scores_imagenet_r_from_a_config(tiny_timm, tmp_path):
    """A config naming ImageNetR: tools/test.py reports the masked top-1 (and the mean
    per-class recall), as the evaluation suite computes it."""
    import subprocess
    import sys

    from mmclip.evaluation import suite

    reference, cfg = tiny_timm
    root = tmp_path / 'imagenet-r'
    wnids = subset_wnids('imagenet_r')
    for wnid in wnids:
        (root / wnid).mkdir(parents=True)
    _fill_with_photos(root, [wnids[0]], per_folder=8)
    # As the runner builds it: with the config's data preprocessor (CLIP mean / std).
    model = mmclip.get_model(cfg.filename)

    def build():
        with DefaultScope.overwrite_default_scope('mmclip'):
            return DATASETS.build(dict(type='ImageNetR', data_root=str(root),
                                       pipeline=cfg.test_dataloader.dataset.pipeline))

    from mmengine.dataset import pseudo_collate
    dataset = build()
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(len(dataset))]))
    _spread_and_convert(reference, model, batch['inputs'])
    with torch.no_grad():
        predicted = [int(p.pred_score[list(dataset.metainfo['class_map'])].argmax())
                     for p in model(batch['inputs'], batch['data_samples'], mode='predict')]
    # Half the photos go to the class the model predicts for them: known hits.
    for i, info in enumerate(dataset.load_data_list()[::2]):
        path = Path(info['img_path'])
        path.rename(root / wnids[predicted[2 * i]] / f'moved_{path.name}')
    torch.save(model.state_dict(), tmp_path / 'tiny.pth')
    dataset = build()
    expected = suite.classify(model, dataset)
    config = tmp_path / 'tiny_imagenet_r.py'
    config.write_text(
        f'_base_ = {cfg.filename!r}\n'
        'test_dataloader = dict(batch_size=3, num_workers=0, dataset=dict(\n'
        f"    _delete_=True, type='ImageNetR', data_root={str(root)!r},\n"
        '    pipeline={{_base_.test_pipeline}}))\n'
        "test_evaluator = dict(type='Accuracy', topk=(1, 5), mean_recall=True)\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, str(root / 'tools' / 'test.py'), str(config),
                             str(tmp_path / 'tiny.pth'), '--work-dir', str(tmp_path / 'work')],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for key, value in (('top1', expected['acc1']), ('top5', expected['acc5']),
                       ('mean_per_class_recall', expected['mean_per_class_recall'])):
        match = re.search(rf'\| accuracy/{key}\s*\|\s*([\d.]+)\s*\|', output)
        assert match and float(match.group(1)) == pytest.approx(100 * value, abs=0.005), key
    assert 0 < expected['acc1'] < 1


def test_predictions_file_uses_the_dataset_classes(tmp_path):
    import json

    from mmclip.evaluation import DumpPredictions
    scores = torch.tensor([[0.0, 9.0, 1.0, 2.0, 3.0], [0.0, 9.0, 4.0, 2.0, 3.0]]).softmax(1)
    samples = [DataSample().set_gt_label(label).set_pred_score(s)
               for label, s in zip((2, 0), scores)]
    out = tmp_path / 'preds.json'
    evaluator = Evaluator([DumpPredictions(out_file=str(out))])
    evaluator.dataset_meta = dict(classes=('c', 'd', 'e'), class_map=((2, ), (3, ), (4, )))
    evaluator.process(samples)
    evaluator.evaluate(2)
    records = json.loads(out.read_text())
    assert [r['pred_label'] for r in records] == [2, 0]  # outputs 4 and 2: classes e, c
    assert records[0]['pred_score'] == pytest.approx(float(scores[0, 4]))
