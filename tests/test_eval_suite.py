"""The evaluation suite: parity with clip_benchmark, and tools/eval_suite.py end to end.

A tiny CLIP (2 layers, 64 wide, 64 px) is created with random weights in open_clip and
saved as open_clip's file; mmclip loads that file. clip_benchmark's own
``zeroshot_classification.evaluate`` / ``zeroshot_retrieval.evaluate`` run on the open_clip
model and the same images (read by clip_benchmark's readers); mmclip's numbers must be
equal, not close. The tool runs on synthetic folders in every dataset's real layout.
"""
import importlib.util
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_tool
from mmengine.registry import DefaultScope
from PIL import Image
from suite_layouts import (
    ZEROSHOT_STAND_INS,
    make_retrieval_sets,
    make_shift_sets,
    make_zeroshot_sets,
)

import mmclip
from mmclip.evaluation import suite as S
from mmclip.evaluation.metrics.benchmark import (
    classification_metrics,
    mean_per_class_recall,
    retrieval_metrics,
)
from mmclip.registry import DATASETS

open_clip = pytest.importorskip('open_clip')
ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted(p for p in (ROOT / 'tests' / 'data' / 'images').iterdir()
                if p.suffix in ('.png', '.jpg'))
TINY_OPEN_CLIP = dict(
    embed_dim=32, quick_gelu=True,
    vision_cfg=dict(image_size=64, layers=2, width=64, head_width=32, patch_size=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2))
TINY_ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256)
CLASSES = ['brick wall', 'cat', 'coffee mug', 'dog', 'horse', 'rocket']  # sorted, as folders
TEMPLATES = ['a photo of a {c}.', 'a blurry photo of the {c}.', 'art of the {c}.']
# The reference (and its scikit-learn): pip install -e ".[evaluation]". Only the tests
# that compare with it or read its datasets need it.
needs_clip_benchmark = pytest.mark.skipif(
    importlib.util.find_spec('clip_benchmark') is None or
    importlib.util.find_spec('sklearn') is None,
    reason='clip-benchmark is not installed (pip install -e ".[evaluation]")')


def _tiny_config(folder: Path) -> Path:
    """An mmclip zero-shot config of TINY_OPEN_CLIP, with open_clip's eval preprocessing
    at 64 px; its head: the 1000 ImageNet classes, one template (1000 prompts)."""
    path = folder / 'tiny_zeroshot.py'
    path.write_text(
        f"_base_ = [{str(ROOT / 'configs/_base_/models/clip_zeroshot.py')!r},\n"
        f"          {str(ROOT / 'configs/_base_/imagenet_eval.py')!r}]\n"
        f"arch = dict(_delete_=True, **{TINY_ARCH!r})\n"
        "model = dict(\n"
        "    backbone=dict(arch=arch, img_size=64, patch_size=16,\n"
        "                  act_cfg=dict(type='QuickGELU')),\n"
        "    text_backbone=dict(arch=arch, out_channels=32, act_cfg=dict(type='QuickGELU')),\n"
        "    head=dict(in_channels=64, out_channels=32, classes='imagenet',\n"
        "              templates=['a photo of a {}.']))\n"
        "test_pipeline = [\n"
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='ResizeEdge', scale=64, edge='short', backend='pillow',\n"
        "         interpolation='bicubic'),\n"
        "    dict(type='CenterCrop', crop_size=64),\n"
        "    dict(type='PackInputs'),\n"
        "]\n"
        "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    return path


def _photo(index: int, path: Path) -> Path:
    """A different crop / size of one of the test photos per index, as RGB JPEG."""
    with Image.open(PHOTOS[index % len(PHOTOS)]) as img:
        img = img.convert('RGB')
    w, h = img.size
    k = index // len(PHOTOS) + 1
    img = img.crop((w // (8 * k), h // (9 * k), w - w // (5 * k), h - h // (7 * k)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.resize((80 + 7 * index, 70 + 5 * (index % 4))).save(path, quality=92)
    return path


@torch.no_grad()
def _centre_image_features(oc, images: torch.Tensor) -> None:
    """Random towers give every image nearly the same embedding; centring the image
    tower's final LayerNorm on these images spreads their predictions."""
    captured = []
    hook = oc.visual.ln_post.register_forward_hook(lambda m, i, o: captured.append(o))
    oc.encode_image(images)
    hook.remove()
    out = captured[0]
    cls = out[:, 0] if out.ndim == 3 else out
    oc.visual.ln_post.bias -= cls.mean(0)


@torch.no_grad()
def _centre_text_features(oc, texts) -> None:
    """The same for the text tower, at the end-of-text token its embedding is read at."""
    tokens = open_clip.get_tokenizer('ViT-B-32')(texts)
    captured = []
    hook = oc.ln_final.register_forward_hook(lambda m, i, o: captured.append(o))
    oc.encode_text(tokens)
    hook.remove()
    pooled = captured[0][torch.arange(len(tokens)), tokens.argmax(dim=-1)]
    oc.ln_final.bias -= pooled.mean(0)


@pytest.fixture(scope='module')
def tower(tmp_path_factory):
    """(open_clip model, its preprocess, the saved file, the mmclip config, folder)."""
    folder = tmp_path_factory.mktemp('tower')
    (folder / 'mmclip-tiny-test.json').write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(str(folder / 'mmclip-tiny-test.json'))
    torch.manual_seed(0)
    oc = open_clip.create_model('mmclip-tiny-test', pretrained=None).eval()
    preprocess = open_clip.image_transform(64, is_train=False,
                                           mean=open_clip.OPENAI_DATASET_MEAN,
                                           std=open_clip.OPENAI_DATASET_STD)
    photos = [_photo(i, folder / 'photos' / f'{i}.jpg') for i in range(12)]
    _centre_image_features(oc, torch.stack([preprocess(Image.open(p)) for p in photos]))
    _centre_text_features(oc, CAPTIONS)
    checkpoint = folder / 'open_clip_pytorch_model.bin'
    torch.save(oc.state_dict(), checkpoint)
    return oc, preprocess, checkpoint, _tiny_config(folder), folder


@pytest.fixture(autouse=True)
def _head_cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))


def _ours(tower, **prompts):
    _, _, checkpoint, config, _ = tower
    return mmclip.get_model(str(config), pretrained=str(checkpoint), **prompts)


def _build(dataset_cfg: dict):
    with DefaultScope.overwrite_default_scope('mmclip'):
        return DATASETS.build(dataset_cfg)


def _tokenizer():
    return open_clip.get_tokenizer('ViT-B-32')


# ---- classification ---------------------------------------------------------------------------
def _class_folders(root: Path) -> Path:
    """Unbalanced class folders (so that mean per-class recall differs from top-1)."""
    counts = [5, 1, 3, 2, 4, 1]
    index = 0
    for name, count in zip(CLASSES, counts):
        for _ in range(count):
            _photo(index, root / name / f'{index:03d}.jpg')
            index += 1
    return root


def _numpy2_safe(zeroshot_classification, monkeypatch) -> None:
    """clip_benchmark 1.6.2's ``accuracy`` calls ``float()`` on a 1-element array, which
    numpy 2.4 refuses; run its own source with that one conversion indexed."""
    import inspect
    source = inspect.getsource(zeroshot_classification.accuracy)
    fixed = source.replace('.cpu().numpy())', '.cpu().numpy()[0])')
    assert fixed.count('numpy()[0]') == 1
    scope = dict(vars(zeroshot_classification))
    exec(compile(fixed, zeroshot_classification.__file__, 'exec'), scope)
    monkeypatch.setattr(zeroshot_classification, 'accuracy', scope['accuracy'])


@needs_clip_benchmark
def test_zero_shot_classification_equals_clip_benchmarks(tower, tmp_path, monkeypatch):
    from clip_benchmark.metrics import zeroshot_classification
    from torchvision.datasets import ImageFolder

    _numpy2_safe(zeroshot_classification, monkeypatch)
    oc, preprocess, *_ = tower
    root = _class_folders(tmp_path / 'classes')
    folder_set = ImageFolder(str(root), transform=preprocess)
    folder_set.classes = CLASSES  # clip_benchmark sets its class names so
    loader = torch.utils.data.DataLoader(folder_set, batch_size=4)
    # Same folders sorted the same way: CLASSES are in sorted order.
    assert sorted(CLASSES) == CLASSES
    expected = zeroshot_classification.evaluate(oc, loader, _tokenizer(), CLASSES, TEMPLATES,
                                                'cpu', amp=False)

    model = _ours(tower, classes=CLASSES, templates=[t.replace('{c}', '{}') for t in TEMPLATES])
    pipeline = model.cfg.test_dataloader.dataset.pipeline
    dataset = _build(dict(type='CustomDataset', data_root=str(root), classes=CLASSES,
                          pipeline=pipeline))
    got = S.classify(model, dataset, batch_size=5)
    assert got == expected  # exact: same top-k, same arithmetic
    assert 0 < got['acc1'] < got['acc5'] < 1
    assert got['mean_per_class_recall'] != got['acc1']


@needs_clip_benchmark
def test_classification_numbers_on_ties_and_few_classes():
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    target = torch.tensor([1, 1, 0, 1])
    got = classification_metrics(logits, target)
    # argmax and topk both pick the first of tied maxima (class 0 for image 0).
    assert got['acc1'] == 0.5
    assert np.isnan(got['acc5'])  # fewer than 5 classes: clip_benchmark reports NaN
    assert got['mean_per_class_recall'] == pytest.approx((1 / 3 + 1) / 2)
    from sklearn.metrics import balanced_accuracy_score
    target, pred = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 3])
    with pytest.warns(UserWarning, match='y_pred contains classes not in y_true'):
        expected = balanced_accuracy_score(target, pred)  # class 3 is only predicted
    assert mean_per_class_recall(target, pred) == expected


@needs_clip_benchmark
# clip_benchmark's scikit-learn call warns when a class is predicted but has no image.
@pytest.mark.filterwarnings('ignore:y_pred contains classes not in y_true')
# ... and its builder when a dataset has no splits (EuroSAT, SUN397, Caltech-101: all read).
@pytest.mark.filterwarnings('ignore:split argument ignored')
@pytest.mark.parametrize('name', list(ZEROSHOT_STAND_INS))
def test_clip_benchmark_datasets_equal_clip_benchmarks_numbers(tower, tmp_path, name,
                                                              monkeypatch):
    """Its readers, splits, class names and templates, through mmclip's preprocessing, on
    every zero-shot dataset a stand-in can give (tests/suite_layouts.py says which not)."""
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification

    _numpy2_safe(zeroshot_classification, monkeypatch)
    oc, preprocess, *_ = tower
    counts = make_zeroshot_sets(tmp_path)
    theirs = build_dataset(name, root=str(tmp_path / name), transform=preprocess,
                           split='test', download=False)
    expected = zeroshot_classification.evaluate(
        oc, torch.utils.data.DataLoader(theirs, batch_size=4), _tokenizer(), theirs.classes,
        theirs.templates, 'cpu', amp=False)

    model = _ours(tower)
    spec = S.SUITE_DATASETS[name]
    dataset = S.build_dataset(spec, str(tmp_path / name),
                              model.cfg.test_dataloader.dataset.pipeline)
    assert len(dataset) == counts[name]
    assert list(dataset.metainfo['classes']) == list(theirs.classes)
    assert list(dataset.metainfo['templates']) == [t.replace('{c}', '{}')
                                                   for t in theirs.templates]
    got = S.evaluate(model, spec, dataset, batch_size=4)
    assert list(got) == list(expected)
    for key in got:  # equal, NaN (acc5 of the sets of under 5 classes) included
        assert got[key] == expected[key] or (np.isnan(got[key]) and np.isnan(expected[key]))
    assert model.head.classes[0] == 'tench'  # the model's own head is back afterwards


@needs_clip_benchmark
def test_clip_benchmark_dataset_layout_errors(tmp_path):
    with pytest.raises(mmclip.datasets.DatasetLayoutError,
                       match=r"mnist/MNIST/raw' does not exist\. Expected .*t10k-images"):
        _build(dict(type='ClipBenchmarkDataset', name='mnist', data_root=str(tmp_path / 'mnist')))
    (tmp_path / 'dtd' / 'dtd').mkdir(parents=True)  # the folder, but not what is in it
    with pytest.raises(mmclip.datasets.DatasetLayoutError,
                       match=r"clip_benchmark could not read dtd .*Expected .*labels/test1\.txt"):
        _build(dict(type='ClipBenchmarkDataset', name='dtd', data_root=str(tmp_path / 'dtd')))


@needs_clip_benchmark
def test_svhn_is_read_by_torchvision_with_clip_benchmarks_prompts(tmp_path):
    """clip_benchmark reads SVHN only through TensorFlow Datasets: mmclip reads the test
    file with torchvision, which accepts only the official file (its MD5), and takes the
    prompts from clip_benchmark's packaged files, read as its build_dataset reads them."""
    from clip_benchmark.datasets.builder import build_dataset

    from mmclip.datasets.clip_benchmark import clip_benchmark_prompts
    make_zeroshot_sets(tmp_path)
    theirs = build_dataset('mnist', root=str(tmp_path / 'mnist'), split='test', download=False)
    assert clip_benchmark_prompts('mnist') == (list(theirs.classes), list(theirs.templates))
    classes, templates = clip_benchmark_prompts('svhn')
    assert classes[:3] == ['zero', 'one', 'two'] and len(classes) == 10 and templates
    (tmp_path / 'svhn').mkdir()
    (tmp_path / 'svhn' / 'test_32x32.mat').write_bytes(b'not the official file')
    with pytest.raises(mmclip.datasets.DatasetLayoutError,
                       match=r"could not read svhn .*corrupted.*Expected .*test_32x32\.mat"):
        _build(dict(type='ClipBenchmarkDataset', name='svhn', data_root=str(tmp_path / 'svhn')))


# ---- retrieval --------------------------------------------------------------------------------
CAPTIONS = ['a cat on a sofa', 'an astronaut in space', 'a horse in a field', 'coffee',
            'a red brick wall', 'gravel on a path', 'coins on a table', 'a rocket launch',
            'a portrait of a woman', 'a grey image', 'a dog, running', 'a sunny beach']


def _flickr_root(root: Path, num_images: int = 12) -> Path:
    lines = ['image,caption']
    for i in range(num_images):
        _photo(i, root / f'{1000 + i}.jpg')
        for j in range(1 + i % 3):  # 1-3 captions per image, some with commas
            lines.append(f'{1000 + i}.jpg,{CAPTIONS[(i + 5 * j) % len(CAPTIONS)]}, take {j}')
    (root / 'flickr30k_test_karpathy.txt').write_text('\n'.join(lines) + '\n')
    return root


@needs_clip_benchmark
def test_retrieval_equals_clip_benchmarks(tower, tmp_path):
    from clip_benchmark.datasets.builder import image_captions_collate_fn
    from clip_benchmark.datasets.flickr import Flickr
    from clip_benchmark.metrics import zeroshot_retrieval

    oc, preprocess, *_ = tower
    root = _flickr_root(tmp_path / 'flickr30k')
    theirs = Flickr(str(root), str(root / 'flickr30k_test_karpathy.txt'), transform=preprocess)
    loader = torch.utils.data.DataLoader(theirs, batch_size=5,
                                         collate_fn=image_captions_collate_fn)
    expected = zeroshot_retrieval.evaluate(oc, loader, _tokenizer(), 'cpu', amp=False,
                                           recall_k_list=[1, 5, 10])

    model = _ours(tower)
    dataset = _build(dict(type='FlickrCaptions', data_root=str(root),
                          pipeline=model.cfg.test_dataloader.dataset.pipeline))
    assert [d['captions'] for d in dataset.load_data_list()] == [c for _, c in theirs.data]
    got = S.retrieve(model, dataset, batch_size=5)
    assert got == expected
    assert 0 < got['image_retrieval_recall@1'] < got['image_retrieval_recall@5'] < 1
    assert 0 < got['text_retrieval_recall@1'] < got['text_retrieval_recall@10']

    # The embeddings themselves: open_clip's within 1e-5.
    images = torch.stack([preprocess(Image.open(theirs.root + '/' + n).convert('RGB'))
                          for n, _ in theirs.data])
    texts = [c for _, caps in theirs.data for c in caps]
    from mmengine.dataset import pseudo_collate
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(len(dataset))]))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(batch['inputs']),
                                   oc.encode_image(images, normalize=True), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(texts),
                                   oc.encode_text(_tokenizer()(texts), normalize=True),
                                   atol=1e-5, rtol=0)


def test_recall_counts_an_image_found_by_any_of_its_captions():
    images = torch.eye(3)
    # texts 0, 1 belong to image 0 (text 1 points at image 2); text 2 to image 1.
    texts = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    got = retrieval_metrics(images, texts, torch.tensor([0, 0, 1]), ks=(1, 5))
    assert got['image_retrieval_recall@1'] == pytest.approx(2 / 3)
    assert got['text_retrieval_recall@1'] == pytest.approx(2 / 3)  # image 2 has no text
    assert got['image_retrieval_recall@5'] == 1.0  # k capped at the 3 images


# ---- tools/eval_suite.py ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def tool():
    return load_tool('eval_suite.py')


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    """(config, checkpoint) of a tiny random ImageNet classifier (1000 outputs)."""
    from conftest import write_tiny_config
    from mmengine.config import Config

    from mmclip.registry import MODELS
    folder = tmp_path_factory.mktemp('classifier')
    config = write_tiny_config(folder)
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    checkpoint = folder / 'tiny.pth'
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


@pytest.fixture(scope='module')
def shift_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('shift_sets')
    return root, make_shift_sets(root)


def _lines(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _suite_argv(classifier, data_root, out, *extra):
    config, checkpoint = classifier
    return [str(config), str(checkpoint), '--suite', 'imagenet-shifts', '--data-root',
            str(data_root), '--out', str(out), '--num-workers', '0', '--batch-size', '2',
            *extra]


def test_tool_runs_every_shift_set_and_resumes(tool, classifier, shift_sets, tmp_path,
                                               capsys, monkeypatch):
    root, counts = shift_sets
    out = tmp_path / 'results.jsonl'
    assert tool.main(_suite_argv(classifier, root, out)) == 0
    printed = capsys.readouterr().out
    records = _lines(out)
    assert [r['dataset'] for r in records] == list(S.SUITES['imagenet-shifts'])
    for r in records:
        assert set(r) >= {'dataset', 'model', 'pretrained', 'task', 'metrics', 'language'}
        assert r['task'] == 'zeroshot_classification' and r['language'] == 'en'
        assert set(r['metrics']) == {'acc1', 'acc5', 'mean_per_class_recall'}
        assert r['num_images'] == counts[r['dataset']]
    assert '[6/8] imagenet-r: 3 images' in printed
    assert 'imagenet-r: 2/2 batches' in printed  # progress
    assert 'WARNING: imagenet-a has 3 images; the published set has 7500' in printed
    assert '| dataset | images | top-1 |' in printed and '| objectnet | 2 |' in printed

    # The R line is what the suite's own functions give for that folder.
    model = mmclip.get_model(str(classifier[0]), pretrained=str(classifier[1]))
    spec = S.SUITE_DATASETS['imagenet-r']
    dataset = S.build_dataset(spec, str(root / 'imagenet-r'),
                              model.cfg.test_dataloader.dataset.pipeline)
    assert records[5]['metrics'] == S.classify(model, dataset)

    # A second run computes nothing.
    def must_not_run(*args, **kwargs):
        raise AssertionError('a finished dataset was evaluated again')

    monkeypatch.setattr(S, 'evaluate', must_not_run)
    monkeypatch.setattr(mmclip, 'get_model', must_not_run)  # nor is the model loaded
    assert tool.main(_suite_argv(classifier, root, out)) == 0
    assert 'objectnet: already in' in capsys.readouterr().out
    assert _lines(out) == records


def test_a_killed_run_resumes_after_its_last_finished_dataset(tool, classifier, shift_sets,
                                                              tmp_path, monkeypatch):
    root, _ = shift_sets
    out = tmp_path / 'results.jsonl'
    names = ['imagenetv2', 'imagenet-r', 'objectnet']
    argv = _suite_argv(classifier, root, out)[:-4] + ['--suite', ','.join(names)]
    evaluate, calls = S.evaluate, []

    class Killed(Exception):
        """Stands in for the process being killed mid-dataset."""

    def killed_at_the_second(model, spec, *args, **kwargs):
        calls.append(spec.name)
        if len(calls) == 2:
            raise Killed
        return evaluate(model, spec, *args, **kwargs)

    monkeypatch.setattr(S, 'evaluate', killed_at_the_second)
    with pytest.raises(Killed):
        tool.main(argv)
    assert [r['dataset'] for r in _lines(out)] == names[:1]
    calls.clear()

    def counted(model, spec, *args, **kwargs):
        calls.append(spec.name)
        return evaluate(model, spec, *args, **kwargs)

    monkeypatch.setattr(S, 'evaluate', counted)
    assert tool.main(argv) == 0
    assert calls == names[1:]
    assert [r['dataset'] for r in _lines(out)] == names


def test_objectnet_border_is_part_of_the_result(tool, classifier, shift_sets, tmp_path):
    root, _ = shift_sets
    out = tmp_path / 'results.jsonl'
    argv = _suite_argv(classifier, root, out)[:-4] + ['--suite', 'objectnet']
    assert tool.main(argv) == 0
    assert tool.main(argv + ['--objectnet-border', '0']) == 0  # another protocol: runs
    assert tool.main(argv) == 0  # already there: not appended again
    assert [r['options'] for r in _lines(out)] == [{'border': 2}, {'border': 0}]


def test_missing_and_mislaid_datasets_are_one_line_each(tool, classifier, shift_sets,
                                                       tmp_path, capsys):
    root, _ = shift_sets
    out = tmp_path / 'results.jsonl'
    argv = _suite_argv(classifier, root, out)[:-4] + ['--suite', 'imagenet-r,imagenet-a',
                                                     '--root', f'imagenet-r={root}/imagenet-a',
                                                     '--root', f'imagenet-a={tmp_path}/none']
    assert tool.main(argv) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith('ERROR: ') for e in errors)
    assert errors[0].startswith(f'ERROR: imagenet-r (from {root}/imagenet-a): ')
    assert 'does not hold ImageNet-R' in errors[0] and 'the 200 class folders' in errors[0]
    assert f"data_root '{tmp_path}/none' does not exist. Expected " in errors[1]
    assert not out.exists()  # nothing was evaluated


def test_an_out_file_it_did_not_write_is_left_alone(tool, classifier, shift_sets, tmp_path,
                                                    capsys):
    root, _ = shift_sets
    out = tmp_path / 'notes.jsonl'
    out.write_text('my notes\n')
    assert tool.main(_suite_argv(classifier, root, out)) == 1
    assert 'line 1: not a result line of eval_suite' in capsys.readouterr().err
    assert out.read_text() == 'my notes\n'


def test_tool_retrieval_suite_with_a_tower(tool, tower, tmp_path, capsys):
    _, _, checkpoint, config, _ = tower
    counts = make_retrieval_sets(tmp_path / 'data')
    out = tmp_path / 'retrieval.jsonl'
    argv = [str(config), str(checkpoint), '--suite', 'retrieval', '--data-root',
            str(tmp_path / 'data'), '--out', str(out), '--num-workers', '0']
    assert tool.main(argv) == 0
    records = _lines(out)
    assert [(r['dataset'], r['num_images'], r['task']) for r in records] == [
        (name, counts[name], 'zeroshot_retrieval') for name in S.SUITES['retrieval']]
    assert set(records[0]['metrics']) == {f'{d}_retrieval_recall@{k}' for d in ('image', 'text')
                                          for k in (1, 5, 10)}
    assert '| mscoco_captions | 4 |' in capsys.readouterr().out


def test_retrieval_needs_a_text_tower(tool, classifier, tmp_path, capsys):
    argv = _suite_argv(classifier, tmp_path, tmp_path / 'r.jsonl')[:-4] + ['--suite',
                                                                          'flickr30k']
    assert tool.main(argv) == 1
    assert 'has no text tower' in capsys.readouterr().err


def test_coco_captions_in_clip_benchmarks_order(tmp_path):
    make_retrieval_sets(tmp_path)
    dataset = _build(dict(type='CocoCaptions', data_root=str(tmp_path / 'mscoco')))
    items = dataset.load_data_list()
    assert [Path(d['img_path']).name for d in items] == [
        f'COCO_val2014_{391895 + i:012d}.jpg' for i in range(4)]  # sorted by image id
    assert items[1]['captions'] == ['a blue circle', 'two dogs, playing']
    (tmp_path / 'mscoco' / 'val2014' / 'COCO_val2014_000000391897.jpg').unlink()
    with pytest.raises(mmclip.datasets.DatasetLayoutError, match='1 of the 4 images'):
        _build(dict(type='CocoCaptions', data_root=str(tmp_path / 'mscoco')))


# ---- docs/eval_suite.md -----------------------------------------------------------------------
DOC = ROOT / 'docs' / 'eval_suite.md'
DOC_CLASSIFIER = 'vit-base-p16_clip-openai-pre_3rdparty_in1k'
DOC_TOWER = 'clip_vit-base-p16_openai_zeroshot-cls_in1k'


def _doc_blocks(language: str):
    return re.findall(rf'```{language}\n(.*?)```', DOC.read_text(), re.S)


def _doc_commands():
    """Every command of the page's shell blocks (comments dropped, continuations joined)."""
    commands = []
    for block in _doc_blocks('shell'):
        text = block.replace('\\\n', ' ')
        commands += [line.strip() for line in text.splitlines()
                     if line.strip() and not line.strip().startswith('#')]
    return commands


@needs_clip_benchmark
def test_every_docs_block_runs_on_stand_ins(tool, classifier, tower, tmp_path, monkeypatch,
                                            capsys):
    """The page's commands and Python blocks, with the tiny models standing in for the zoo
    models it names (which are real zoo names) and tiny datasets for the real ones (the
    zero-shot suite by those of its datasets that stand-ins can give)."""
    assert {DOC_CLASSIFIER, DOC_TOWER} <= set(mmclip.list_models())
    page = DOC.read_text()
    for spec in S.SUITE_DATASETS.values():  # every dataset and its folder is documented
        assert f'`{spec.name}`' in page and spec.folder in page, spec.name
    stand_ins = {DOC_CLASSIFIER: [str(p) for p in classifier],
                 DOC_TOWER: [str(tower[3]), str(tower[2])]}
    make_shift_sets(tmp_path / 'data')
    make_retrieval_sets(tmp_path / 'data')
    zeroshot = make_zeroshot_sets(tmp_path / 'data')
    monkeypatch.chdir(tmp_path)
    commands = _doc_commands()
    assert len(commands) == 5
    for command in commands:
        command = command.replace('/mnt/datasets/', f'{tmp_path}/data/')
        argv = shlex.split(command.replace('--suite zeroshot', '--suite ' + ','.join(zeroshot)))
        assert argv[:2] == ['python', 'tools/eval_suite.py'], command
        argv = stand_ins[argv[2]] + argv[3:] + ['--num-workers', '0']
        assert tool.main(argv) == 0, (command, capsys.readouterr().err)
    records = _lines(tmp_path / 'results.jsonl')
    # objectnet again: border 0
    assert len(records) == 2 * len(S.SUITES['imagenet-shifts']) + len(zeroshot) + 3 + 1
    blocks = _doc_blocks('python')
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, str(DOC), 'exec'), {})
    printed = capsys.readouterr().out
    assert "((1,), (2,), (4,))" in printed and 'Alarm clock (409, 530)' in printed
    assert (tmp_path / 'shifts.png').is_file()


# ---- published numbers ------------------------------------------------------------------------
def test_published_numbers_agree_with_the_metafile_and_the_docs():
    """Every zoo model has published numbers or is listed without; each source row agrees
    with the model zoo's metafile (copied independently); the docs show every number."""
    from mmclip.apis import get_model_info
    published = S.published_results()
    models, unpublished = published['models'], published['unpublished']
    assert set(models) | set(unpublished) == set(mmclip.list_models())
    assert not set(models) & set(unpublished)
    page = DOC.read_text()
    for name, entry in models.items():
        results = get_model_info(name).metadata['Results']
        (metafile, ) = [r['Metrics'] for r in results if r['Dataset'] == 'ImageNet-1k']
        values = entry['classification']
        if entry['source'] == 'timm':  # timm's tables have moved by up to 0.25 since
            assert values['imagenet1k']['acc1'] == pytest.approx(
                metafile['Top 1 Accuracy'], abs=0.25), name
            assert values['imagenet1k']['acc5'] == pytest.approx(
                metafile['Top 5 Accuracy'], abs=0.15), name
            shown = {d: v['acc1'] / 100 for d, v in values.items()}
        else:  # the same file and commit as the metafile's
            assert 100 * values['imagenet1k'] == pytest.approx(metafile['Top 1 Accuracy'],
                                                               abs=1e-9), name
            assert set(values) == set(published['sources']['open_clip']['datasets'])
            shown = dict(values)
            for dataset, recalls in entry['retrieval'].items():
                shown.update({f'{dataset} {k}': v for k, v in recalls.items()})
        assert all(0 < v < 1 for v in shown.values()), name
        rows = [line for line in page.splitlines() if line.startswith(f'| `{name}` |')]
        cells = {cell.strip() for row in rows for cell in row.split('|')}
        for key, value in shown.items():
            assert f'{100 * value:.2f}' in cells, (name, key)
    for name in unpublished:
        assert 'Results' not in get_model_info(name).metadata or not [
            r for r in get_model_info(name).metadata['Results'] if r['Dataset'] == 'ImageNet-1k']


def test_published_numbers_name_their_metric_and_set_size():
    tower = 'clip_vit-large-p14_openai_zeroshot-cls_in1k'
    assert S.published_classification(tower, 'imagenet-r') == S.Published(
        'acc1', 0.8784, 30000)
    assert S.published_classification(tower, 'pets').metric == 'mean_per_class_recall'
    assert S.published_classification(tower, 'fer2013') is None
    fine_tuned = 'vit-base-p16_clip-openai-pre_3rdparty_in1k'
    assert S.published_classification(fine_tuned, 'imagenet-a') == S.Published(
        'acc1', pytest.approx(S.published_results()['models'][fine_tuned]['classification'][
            'imagenet-a']['acc1'] / 100), None)
    rows = S.markdown_table([
        dict(dataset='pets', model=tower, num_images=3669,
             metrics=dict(acc1=0.9, acc5=1.0, mean_per_class_recall=0.89)),
        dict(dataset='eurosat', model=tower, num_images=27000,
             metrics=dict(acc1=0.6, acc5=0.9, mean_per_class_recall=0.6)),
        dict(dataset='flickr30k', model=tower, num_images=1000,
             metrics={'image_retrieval_recall@1': 0.6, 'text_retrieval_recall@1': 0.8}),
        dict(dataset='imagenet1k', model='siglip2_vit-base-p16_webli_zeroshot-cls_in1k',
             num_images=50000, metrics=dict(acc1=0.78))]).splitlines()[2:]
    pets = S.published_classification(tower, 'pets').value
    assert f'| {100 * pets:.2f} (per-class recall) |' in rows[0]
    assert '(on 5400 images) |' in rows[1]
    recalls = S.published_retrieval(tower, 'flickr30k')
    assert (f"| image R@1 {100 * recalls['image_retrieval_recall@1']:.2f}, text R@1 "
            f"{100 * recalls['text_retrieval_recall@1']:.2f} |") in rows[2]
    assert rows[3].startswith('| imagenet1k | 50000 | 78.00 | - |')


def test_chart_is_written_and_only_over_its_own(tool, classifier, shift_sets, tmp_path,
                                                capsys):
    from PIL import Image
    root, _ = shift_sets
    chart = tmp_path / 'chart.png'
    argv = _suite_argv(classifier, root, tmp_path / 'r.jsonl')[:-4] + [
        '--suite', 'imagenet-r,objectnet', '--chart', str(chart)]
    assert tool.main(argv) == 0
    with Image.open(chart) as img:
        assert img.format == 'PNG' and img.info['Software'] == S.CHART_SOFTWARE
        low, high = img.convert('L').getextrema()
        assert img.size[0] >= 600 and high - low > 100  # drawn, not blank
    assert tool.main(argv) == 0  # its own chart: replaced
    photo = tmp_path / 'photo.png'
    Image.new('RGB', (8, 8)).save(photo)
    before = photo.read_bytes()
    assert tool.main(argv[:-1] + [str(photo)]) == 1
    assert "is not a chart written by eval_suite" in capsys.readouterr().err
    assert photo.read_bytes() == before
    assert tool.main(argv[:-1] + [str(tmp_path / 'chart.jpg')]) == 1


def test_table_shows_the_published_top1_beside_the_measured():
    name = 'clip_vit-base-p16_openai_zeroshot-cls_in1k'
    records = [dict(dataset='imagenet-r', model=name, num_images=30000,
                    metrics=dict(acc1=0.7712, acc5=0.9, mean_per_class_recall=0.75)),
               dict(dataset='imagenet-r', model='my_config.py', num_images=30000,
                    metrics=dict(acc1=0.5, acc5=0.9, mean_per_class_recall=0.75))]
    rows = S.markdown_table(records).splitlines()
    assert rows[2] == '| imagenet-r | 30000 | 77.12 | 77.70 | 90.00 | 75.00 | - | - |'
    assert rows[3].startswith('| imagenet-r | 30000 | 50.00 | - |')


# ---- several processes ------------------------------------------------------------------------
def test_two_processes_give_the_single_process_results(tool, tower, tmp_path):
    """tools/dist_launch.sh 2: gloo CPU processes, each computing half of every dataset."""
    import socket
    import subprocess
    _, _, checkpoint, config, _ = tower
    make_shift_sets(tmp_path / 'data')
    make_retrieval_sets(tmp_path / 'data')
    argv = [str(config), str(checkpoint), '--suite', 'imagenet-r,objectnet,flickr30k',
            '--data-root', str(tmp_path / 'data'), '--num-workers', '0', '--batch-size', '2']
    assert tool.main(argv + ['--out', str(tmp_path / 'one.jsonl')]) == 0
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT),
               TORCH_HOME=str(tmp_path / 'torch_home'))
    result = subprocess.run(['bash', str(ROOT / 'tools' / 'dist_launch.sh'), '2',
                             'eval_suite.py', *argv, '--out', str(tmp_path / 'two.jsonl')],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = _lines(tmp_path / 'one.jsonl'), _lines(tmp_path / 'two.jsonl')
    assert [r['metrics'] for r in two] == [r['metrics'] for r in one]
    assert [r['num_images'] for r in two] == [3, 2, 3]
    assert result.stdout.count('[1/3] imagenet-r') == 1  # rank 0 alone reports


@needs_clip_benchmark
def test_a_head_for_other_classes_is_refused(tower, tmp_path):
    """A tower with its 1000-class ImageNet head on a 2-class set, without the set's own
    prompts, would score the wrong classes: refused in one line."""
    make_zeroshot_sets(tmp_path)
    model = _ours(tower)
    dataset = S.build_dataset(S.SUITE_DATASETS['renderedsst2'], str(tmp_path / 'renderedsst2'),
                              model.cfg.test_dataloader.dataset.pipeline)
    with pytest.raises(ValueError, match='The model has 1000 outputs and the dataset 2 '):
        S.classify(model, dataset)


# ---- tools/predict.py --embeddings: the embeddings retrieval compares --------------------------
@pytest.fixture(scope='module')
def predict_tool():
    return load_tool('predict.py')


def test_embeddings_file_holds_open_clips_embeddings_with_their_ids(predict_tool, tower,
                                                                     tmp_path, capsys):
    """Image and text embeddings equal open_clip's (within 1e-5), ids in input order; an
    unreadable image is left out and said; the file is never written over."""
    from safetensors import safe_open

    from mmclip.cli.batch_prediction import collect_inputs
    oc, preprocess, checkpoint, config, folder = tower
    photos = folder / 'photos'
    (tmp_path / 'broken.jpg').write_bytes(b'not a JPEG')
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('a photo of a cat\n\na rocket launch\n')
    out = tmp_path / 'emb' / 'photos.safetensors'
    argv = [str(photos), str(tmp_path / 'broken.jpg'), '--model', str(config), '--checkpoint',
            str(checkpoint), '--embeddings', str(out), '--texts', str(prompts),
            '--batch-size', '5', '--num-workers', '0']
    assert predict_tool.main(argv) == 0
    said = capsys.readouterr().out
    assert f'12 of 13 images and 2 texts embedded (32 values each); 1 unreadable, left out: ' \
           f'{tmp_path / "broken.jpg"}; written: {out}' in said
    with safe_open(str(out), 'pt') as f:
        ids = json.loads(f.metadata()['image_ids'])
        texts = json.loads(f.metadata()['text_ids'])
        images, text_embeddings = f.get_tensor('image_embeddings'), f.get_tensor('text_embeddings')
    assert ids == collect_inputs([str(photos)]) and texts == ['a photo of a cat', 'a rocket launch']
    with torch.no_grad():
        expected = oc.encode_image(torch.stack([preprocess(Image.open(p)) for p in ids]),
                                   normalize=True)
        expected_text = oc.encode_text(_tokenizer()(texts), normalize=True)
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(text_embeddings, expected_text, atol=1e-5, rtol=0)

    before = out.read_bytes()
    assert predict_tool.main(argv) == 1
    assert 'exists and was not written by tools/predict.py' in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_classifiers_embeddings_are_its_pre_logits_features_in_npy(predict_tool, classifier,
                                                                      tower, tmp_path, capsys):
    from mmclip.cli.batch_prediction import collect_inputs
    config, checkpoint = classifier
    photos = tower[4] / 'photos'
    out = tmp_path / 'features.npy'
    argv = [str(photos), '--model', str(config), '--checkpoint', str(checkpoint),
            '--embeddings', str(out), '--num-workers', '0']
    assert predict_tool.main(argv) == 0
    ids = json.loads((tmp_path / 'features.npy.ids.json').read_text())
    assert ids == collect_inputs([str(photos)])
    model = mmclip.get_model(str(config), pretrained=str(checkpoint))
    from mmengine.dataset import pseudo_collate

    from mmclip.datasets.transforms import build_test_pipeline
    pipeline = build_test_pipeline(model.cfg)[0]
    batch = model.data_preprocessor(pseudo_collate([pipeline(dict(img_path=p)) for p in ids]))
    with torch.no_grad():
        expected = model.head.pre_logits(model.extract_feat(batch['inputs']))
    torch.testing.assert_close(torch.from_numpy(np.load(out)), expected, atol=1e-5, rtol=0)
    # Text embeddings need a text tower: one line, nothing written.
    capsys.readouterr()
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('a cat\n')
    assert predict_tool.main([*argv[:-4], '--embeddings', str(tmp_path / 'x.npy'), '--texts',
                              str(prompts), '--num-workers', '0']) == 1
    assert 'has no text tower' in capsys.readouterr().err
    assert not (tmp_path / 'x.npy').exists()
