"""Zero-shot CLIP against open_clip: towers, tokenizer, head, cache, preprocessing, tools.

open_clip models with random weights stand in for the published towers: their state dicts
are saved as open_clip's files are and loaded by name through ``get_model``. Everything is
compared with open_clip's own ``encode_image`` / ``encode_text`` / ``preprocess`` /
``build_zero_shot_classifier``, never with numbers written here.
"""
import copy
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from mmengine.config import Config
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES as OPEN_CLIP_TEMPLATES
from PIL import Image
from safetensors.torch import save_file

import mmclip
from mmclip.apis import ImageClassificationInferencer, get_model_info, inference_model
from mmclip.checkpoint import head_cache
from mmclip.datasets.transforms import build_test_pipeline
from mmclip.datasets.zeroshot_prompts import IMAGENET_CLIP_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
from mmclip.models.classifiers import zero_shot_classifier
from mmclip.models.utils import zero_shot
from mmclip.models.utils.tokenizer import tokenize
from mmclip.models.utils.zero_shot import ZeroShotError, build_class_embeddings
from mmclip.utils.atomic_file import PARTIAL_PREFIX

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted(mmclip.list_models('*zeroshot*'))
CLASSES = ['cat', 'dog', 'rocket', 'astronaut', 'horse', 'coffee mug', 'coins', 'gravel']
TEMPLATES = ['a photo of a {}.', 'a blurry photo of the {}.', 'art of the {}.']
B32 = 'clip_vit-base-p32_openai_zeroshot-cls_in1k'
# Gray, RGB of three aspect ratios, RGBA: enough variety for the (slow) tower parity.
PARITY_PHOTOS = ('horse', 'brick', 'chelsea', 'grace_hopper', 'rocket')


def photos(images_dir: Path):
    return sorted(p for p in images_dir.iterdir() if p.suffix in ('.png', '.jpg'))


def open_clip_source(name: str):
    """(open_clip model name, pretrained tag) from the metafile's "Converted From"."""
    return tuple(get_model_info(name).metadata['Converted From']['Model'].split())


def open_clip_preprocess(name: str):
    """open_clip's eval transform for the zoo entry's weights (their input size, mean / std,
    interpolation and resize mode)."""
    model, tag = open_clip_source(name)
    cfg = open_clip.get_pretrained_cfg(model, tag)
    size = open_clip.get_model_config(model)['vision_cfg']['image_size']
    return open_clip.image_transform(size, is_train=False, mean=cfg['mean'], std=cfg['std'],
                                     interpolation=cfg['interpolation'],
                                     resize_mode=cfg['resize_mode'])


def open_image(path: Path) -> Image.Image:
    """What open_clip users pass. RGBA is converted first: open_clip's resize would blend
    semi-transparent pixels with premultiplied alpha, mmclip (as timm) drops alpha first."""
    img = Image.open(path)
    return img.convert('RGB') if img.mode == 'RGBA' else img


def random_open_clip(model_name: str, seed: int = 0):
    torch.manual_seed(seed)
    return open_clip.create_model(model_name).eval()


def save_state_dict(model, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == '.safetensors':
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@torch.no_grad()
def open_clip_probs(oc, images: torch.Tensor, classes, templates) -> torch.Tensor:
    weights = open_clip.build_zero_shot_classifier(
        oc, tokenizer=open_clip.get_tokenizer('ViT-B-32'), classnames=classes,
        templates=templates, device='cpu')
    image = oc.encode_image(images, normalize=True)
    return (oc.logit_scale.exp() * image @ weights).softmax(dim=-1)


@pytest.fixture(scope='module')
def cache_home(tmp_path_factory):
    """An empty TORCH_HOME for the zero-shot head cache of this module."""
    home = tmp_path_factory.mktemp('torch_home')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('TORCH_HOME', str(home))
        yield home


@pytest.fixture(scope='module')
def b32(tmp_path_factory, cache_home):
    """(open_clip ViT-B-32-quickgelu, its open_clip_pytorch_model.bin, our model)."""
    oc = random_open_clip('ViT-B-32-quickgelu')
    path = save_state_dict(oc, tmp_path_factory.mktemp('b32') / 'open_clip_pytorch_model.bin')
    model = mmclip.get_model(B32, pretrained=str(path), classes=CLASSES, templates=TEMPLATES)
    return oc, path, model


# ---- prompts, tokenizer, preprocessing ------------------------------------------------------
def test_prompt_lists_equal_open_clips():
    assert OPENAI_IMAGENET_TEMPLATES == tuple(t('{}') for t in OPEN_CLIP_TEMPLATES)
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert IMAGENET_CLIP_CLASSNAMES == tuple(IMAGENET_CLASSNAMES)
    assert len(IMAGENET_CLIP_CLASSNAMES) == 1000


def test_tokenizer_equals_open_clips():
    texts = ['a photo of a cat.', 'A PHOTO of a CaT', 'Ünïcödé naïve café — 東京タワー',
             'emoji 🐱🚀👩‍🚀 and flags 🇫🇷', 'fish &amp; chips &lt;3 &#39;quoted&#39; &amp;amp;',
             '   lots\tof \n whitespace   ', '',
             ' '.join(f'word{i}' for i in range(120)),  # far more than 77 tokens
             'supercalifragilisticexpialidocious ' * 30]
    ours, theirs = tokenize(texts), open_clip.tokenize(texts)
    assert ours.shape == (len(texts), 77) and ours.dtype == torch.int64
    assert torch.equal(ours, theirs)
    assert ours[-1, -1] == ours.max()  # truncated: end-of-text kept as the last token
    with pytest.raises(TypeError, match='list of texts'):
        tokenize('a single string')


@pytest.mark.parametrize('name', ZOO)
def test_preprocessing_equals_open_clips(name, images_dir):
    """Each config's test pipeline + data preprocessor == open_clip's preprocess (1e-5)."""
    cfg = Config.fromfile(get_model_info(name).config)
    pipeline = build_test_pipeline(cfg)[0]
    preprocessor = mmclip.registry.MODELS.build(dict(type='ClsDataPreprocessor',
                                                     **cfg.data_preprocessor))
    theirs = open_clip_preprocess(name)
    for path in photos(images_dir):
        packed = pipeline(dict(img_path=str(path)))
        ours = preprocessor(dict(inputs=[packed['inputs']]))['inputs'][0]
        torch.testing.assert_close(ours, theirs(open_image(path)), atol=1e-5, rtol=0)


# ---- towers and zero-shot probabilities --------------------------------------------------
@pytest.mark.parametrize('name,file_name,num_images', [
    (B32, 'open_clip_pytorch_model.bin', None),
    ('clip_vit-base-p16_laion2b_zeroshot-cls_in1k', 'open_clip_model.safetensors', None),
    ('clip_vit-large-p14_laion2b_zeroshot-cls_in1k', 'open_clip_pytorch_model.bin', 2),
])
def test_towers_and_probabilities_equal_open_clips(name, file_name, num_images, images_dir,
                                                   tmp_path, torch_home):
    oc_name, _ = open_clip_source(name)
    if name == B32:
        assert oc_name == 'ViT-B-32-quickgelu'
    oc = random_open_clip(oc_name)
    path = save_state_dict(oc, tmp_path / file_name)
    model = mmclip.get_model(name, pretrained=str(path), classes=CLASSES, templates=TEMPLATES)
    files = [f for f in photos(images_dir) if f.stem in PARITY_PHOTOS][:num_images]
    preprocess = open_clip_preprocess(name)
    batch = torch.stack([preprocess(open_image(f)) for f in files])
    texts = [t.format(c) for c in CLASSES[:3] for t in TEMPLATES]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(batch),
                                   oc.encode_image(batch, normalize=True), atol=1e-4, rtol=0)
        torch.testing.assert_close(model.encode_text(texts),
                                   oc.encode_text(open_clip.tokenize(texts), normalize=True),
                                   atol=1e-4, rtol=0)
        expected = open_clip_probs(oc, batch, CLASSES, TEMPLATES)
        torch.testing.assert_close(model(batch).softmax(dim=-1), expected, atol=1e-4, rtol=0)
    # End to end from the files: our pipeline and preprocessor vs open_clip's preprocess.
    results = inference_model(model, [str(f) for f in files])
    scores = torch.from_numpy(np.stack([r['pred_scores'] for r in results]))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    assert [r['pred_class'] for r in results] == [CLASSES[i] for i in expected.argmax(dim=1)]


def test_text_tower_cuts_padding_exactly(b32):
    """A prompt's embedding does not depend on the batch it is cut with, nor on what follows
    its end-of-text token (causal mask)."""
    tower = b32[2].text_backbone
    tokens = tokenize(['a cat', 'a photo of a very small and rather fluffy grey cat.'])
    noisy = tokens[:1].clone()
    eot = int(noisy[0].argmax())
    noisy[0, eot + 1:eot + 18] = torch.arange(100, 117)  # after end-of-text, below its id
    with torch.no_grad():  # 1e-5: other shapes take other fp32 GEMM blockings
        alone = tower(tokens[:1])
        torch.testing.assert_close(tower(tokens)[:1], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(tower(torch.cat([noisy, tokens[1:]]))[:1], alone,
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='L <= 77'):
        tower(torch.zeros(1, 78, dtype=torch.long))


def test_quickgelu_matters(b32):
    """Loading OpenAI-style (QuickGELU) weights into a GELU tower changes the embedding."""
    oc, path, model = b32
    gelu = mmclip.get_model(B32, pretrained=str(path), classes=CLASSES, templates=TEMPLATES,
                            backbone=dict(act_cfg=dict(type='GELU')))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (gelu.encode_image(x) - model.encode_image(x)).abs().max() > 1e-3


def test_eighty_template_head_equals_open_clips(b32):
    """The ImageNet head (80 templates) on a subset of the 1000 classes."""
    oc, _, model = b32
    subset = [IMAGENET_CLIP_CLASSNAMES[i] for i in (1, 417)]
    with torch.no_grad():
        theirs = open_clip.build_zero_shot_classifier(
            oc, tokenizer=open_clip.get_tokenizer('ViT-B-32'), classnames=subset,
            templates=OPEN_CLIP_TEMPLATES, device='cpu')
    ours = build_class_embeddings(model.text_backbone, subset, OPENAI_IMAGENET_TEMPLATES)
    torch.testing.assert_close(ours, theirs.T, atol=1e-5, rtol=0)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_head_is_cached_and_reused(b32, cache_home, monkeypatch, caplog):
    oc, path, model = b32
    monkeypatch.setenv('TORCH_HOME', str(cache_home))  # where b32 built its head
    cached = Path(head_cache.head_path(zero_shot.cache_key(model.text_backbone, CLASSES,
                                                           TEMPLATES)))
    assert cached.parent == cache_home / 'hub' / 'mmclip' / 'zeroshot_heads'
    assert cached.is_file() and not list(cached.parent.glob(PARTIAL_PREFIX + '*'))
    assert cached.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    built = model.head.class_embeddings.clone()

    def refuse(*args, **kwargs):
        raise AssertionError('the cached head should have been used')

    with monkeypatch.context() as mp:
        mp.setattr(zero_shot, 'build_class_embeddings', refuse)
        again = mmclip.get_model(B32, pretrained=str(path), classes=CLASSES,
                                 templates=TEMPLATES)
    assert torch.equal(again.head.class_embeddings, built)
    # A damaged cache file is rebuilt (with a warning), not trusted.
    cached.write_bytes(b'not a safetensors file')
    rebuilt = mmclip.get_model(B32, pretrained=str(path), classes=CLASSES, templates=TEMPLATES)
    torch.testing.assert_close(rebuilt.head.class_embeddings, built, atol=1e-6, rtol=0)
    # Other classes, or other weights, are another key.
    keys = {zero_shot.cache_key(model.text_backbone, CLASSES, TEMPLATES),
            zero_shot.cache_key(model.text_backbone, CLASSES[:-1], TEMPLATES)}
    with torch.no_grad():
        again.text_backbone.ln_final.bias.add_(1)
    keys.add(zero_shot.cache_key(again.text_backbone, CLASSES, TEMPLATES))
    assert len(keys) == 3


def _forged_cache(path: Path, emb: torch.Tensor, key) -> None:
    from safetensors.torch import save
    metadata = None if key is None else {'key': key}
    path.write_bytes(save({'class_embeddings': emb.contiguous()}, metadata=metadata))


@pytest.mark.parametrize('case', ['symlink', 'no key', 'wrong key', 'wrong shape',
                                  'wider', 'non-unit rows', 'fifo'])
def test_a_cache_file_that_fails_a_check_is_rebuilt_with_one_warning(b32, tmp_path,
                                                                     monkeypatch, case):
    tower = b32[2].text_backbone
    key = zero_shot.cache_key(tower, CLASSES, TEMPLATES)
    cached = Path(head_cache.head_path(key))
    built = zero_shot.cached_class_embeddings(tower, CLASSES, TEMPLATES)
    assert cached.is_file()
    # Each forgery would steer every prediction if it were trusted: rows swapped, and
    # unit-norm (as a real head) unless the case says otherwise.
    swapped = built.flip(0)
    if case == 'symlink':  # a real head's file, of the key, behind a link someone planted
        elsewhere = tmp_path / 'planted.safetensors'
        _forged_cache(elsewhere, swapped, key)
        cached.unlink()
        cached.symlink_to(elsewhere)
        planted = elsewhere.read_bytes()
    elif case == 'fifo':
        cached.unlink()
        os.mkfifo(cached)  # reading it would block the run
    else:
        emb = {'wrong shape': swapped[:-1], 'wider': torch.nn.functional.normalize(
            torch.cat([swapped, swapped[:, :1]], dim=1), dim=-1),
               'non-unit rows': swapped * 1.01}.get(case, swapped)
        _forged_cache(cached, emb, {'no key': None, 'wrong key': 'f' * 64}.get(case, key))
    warnings = []
    monkeypatch.setattr(head_cache, 'print_log',
                        lambda msg, **kwargs: warnings.append(msg) if 'Ignoring' in msg else None)
    got = zero_shot.cached_class_embeddings(tower, CLASSES, TEMPLATES)
    torch.testing.assert_close(got, built, atol=1e-6, rtol=0)
    assert len(warnings) == 1 and warnings[0].startswith(
        f'Ignoring the zero-shot head cache {cached} (')
    reason = {'symlink': 'symbolic link', 'no key': 'no key', 'wrong key': 'f' * 64,
              'wrong shape': f'[{len(CLASSES) - 1}, 512], not float32 [{len(CLASSES)}, 512]',
              'wider': '513], not float32', 'non-unit rows': 'not unit-norm',
              'fifo': 'not a regular file'}[case]
    assert reason in warnings[0]
    assert cached.is_file() and not cached.is_symlink()  # rebuilt in place of the link
    if case == 'symlink':
        assert elsewhere.read_bytes() == planted  # never written through
    assert head_cache.read_head(key, len(CLASSES), 512) is not None


def test_built_head_is_saved_and_loaded_as_an_ordinary_checkpoint(b32, tmp_path,
                                                                  monkeypatch):
    oc, path, model = b32
    saved = tmp_path / 'zero_shot_head.pth'
    torch.save(model.state_dict(), saved)
    assert 'head.class_embeddings' in torch.load(saved, weights_only=True)

    def refuse(*args, **kwargs):
        raise AssertionError('the saved head should have been used')

    monkeypatch.setattr(zero_shot_classifier, 'cached_class_embeddings', refuse)
    loaded = mmclip.get_model(B32, pretrained=str(saved), classes=CLASSES,
                              templates=TEMPLATES)
    assert torch.equal(loaded.head.class_embeddings, model.head.class_embeddings)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    monkeypatch.undo()
    # A head saved for other prompts never stands in for these: it is rebuilt.
    fewer = mmclip.get_model(B32, pretrained=str(saved), classes=CLASSES[:3],
                             templates=TEMPLATES)
    torch.testing.assert_close(fewer.head.class_embeddings, model.head.class_embeddings[:3],
                               atol=1e-6, rtol=0)
    swapped = mmclip.get_model(B32, pretrained=str(saved), classes=CLASSES[::-1],
                               templates=TEMPLATES)
    torch.testing.assert_close(swapped.head.class_embeddings,
                               model.head.class_embeddings.flip(0), atol=1e-6, rtol=0)


def test_a_head_saved_between_a_change_and_its_rebuild_is_rebuilt_when_loaded(b32, tmp_path):
    """The digest says which prompts the saved class embeddings were built from, whatever
    the model was set to when it was saved: new classes not yet built, or towers changed
    after the head was built (a load without the head), are never taken as built."""
    oc, path, model = b32
    stale = copy.deepcopy(model)
    stale.set_classes(list(CLASSES[::-1]))  # not built yet: still the CLASSES head
    saved = tmp_path / 'not_built.pth'
    torch.save(stale.state_dict(), saved)
    loaded = mmclip.get_model(B32, pretrained=str(saved), classes=CLASSES[::-1],
                              templates=TEMPLATES)  # builds the head it finds stale
    torch.testing.assert_close(loaded.head.class_embeddings, model.head.class_embeddings.flip(0),
                               atol=1e-6, rtol=0)
    # Towers loaded without a head: the built head no longer belongs to them.
    towers_only = {k: v for k, v in model.state_dict().items()
                   if k not in model.derived_state_keys}
    stale = copy.deepcopy(model)
    stale.load_state_dict(towers_only)  # torch's own load: the head fills in what is missing
    assert not stale.head_built and not stale.head.built_for_prompts()
    assert not stale.head.prompt_digest.any()  # what a checkpoint saved now would say


def test_new_classes_from_python_and_the_demo(b32, images_dir, capsys, monkeypatch):
    oc, path, model = b32
    files = [str(f) for f in photos(images_dir)[:3]]
    classes = ['rocket', 'cat', 'dog']
    result = inference_model(model, files, classes=classes)
    assert model.classes == tuple(CLASSES)  # the caller's model is not changed
    preprocess = open_clip_preprocess(B32)
    batch = torch.stack([preprocess(open_image(Path(f))) for f in files])
    expected = open_clip_probs(oc, batch, classes, TEMPLATES)
    scores = torch.from_numpy(np.stack([r['pred_scores'] for r in result]))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    assert [r['pred_class'] for r in result] == [classes[i] for i in expected.argmax(dim=1)]

    config = get_model_info(B32).config
    monkeypatch.setattr(sys, 'argv', ['image_demo.py', files[0], config, '--pretrained',
                                      str(path), '--classes', ' rocket, cat,dog', '--topk',
                                      '3', '--device', 'cpu'])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / 'demo' / 'image_demo.py'), run_name='__main__')
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    ranked = [line.split()[1] for line in out.splitlines()[2:5]]
    assert ranked == [classes[i] for i in expected[0].argsort(descending=True)]


def test_bad_input_is_one_clear_line(b32, tmp_path):
    _, path, _ = b32
    cases = [
        (dict(model=B32, classes=[]), 'non-empty list'),
        (dict(model=B32, classes='cat,dog'), 'list of strings'),
        (dict(model=B32, classes=['cat', '']), 'non-empty strings'),
        (dict(model=B32, classes=['cat'], templates=['a photo of a cat']), 'exactly one {}'),
        (dict(model=B32, classes=['cat'], templates=['{} and {}']), 'exactly one {}'),
        (dict(model='vit-base-p32_clip-openai-pre_3rdparty_in1k', classes=['cat']),
         'vision-only'),
        (dict(model='vit-base-p32_clip-openai-pre_3rdparty_in1k', pretrained=str(path)),
         'text tower'),
    ]
    for kwargs, message in cases:
        with pytest.raises(ZeroShotError, match=re.escape(message)) as err:
            mmclip.get_model(**kwargs)
        assert '\n' not in str(err.value)
    vision_only = 'vit-base-p32_clip-openai-pre_3rdparty_in1k'
    with pytest.raises(ZeroShotError, match='templates= chooses .* vision-only'):
        ImageClassificationInferencer(vision_only, pretrained=False, templates=['a {}'])
    with pytest.raises(ZeroShotError, match='classes= chooses what a zero-shot model'):
        ImageClassificationInferencer(vision_only, pretrained=False, classes=['a', 'b', 'c'])


def test_every_strict_load_of_a_text_tower_into_a_vision_model_says_so(b32):
    """load_checkpoint (tools/test.py, get_model) refuses it in one line; a non-strict load
    takes the image tower, as fine-tuning from CLIP weights does."""
    from mmclip.checkpoint import load_checkpoint
    oc, path, _ = b32
    vision_only = mmclip.get_model('vit-base-p32_clip-openai-pre_3rdparty_in1k')
    with pytest.raises(ZeroShotError, match=re.escape(f'{path} is a CLIP checkpoint with a '
                                                      f'text tower')) as err:
        load_checkpoint(vision_only, str(path))
    assert '\n' not in str(err.value)
    load_checkpoint(vision_only, str(path), strict=False)
    torch.testing.assert_close(vision_only.backbone.patch_embed.projection.weight,
                               oc.visual.conv1.weight, rtol=0, atol=0)


# ---- tools/test.py -----------------------------------------------------------------------
def test_tools_test_top1_top5_equal_open_clips(b32, images_dir, tmp_path):
    """tools/test.py with the zoo config (10 classes, 3 templates) and the open_clip file."""
    oc, path, _ = b32
    classes = CLASSES + ['tree', 'car']
    root = tmp_path / 'imagenet'
    (root / 'val').mkdir(parents=True)
    (root / 'meta').mkdir()
    files = []
    for i, src in enumerate(photos(images_dir)):
        dst = root / 'val' / f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        dst.write_bytes(src.read_bytes())  # PNG content behind .JPEG names decodes by content
        files.append(dst)
    preprocess = open_clip_preprocess(B32)
    probs = open_clip_probs(oc, torch.stack([preprocess(open_image(f)) for f in files]),
                            classes, TEMPLATES)
    top2 = probs.topk(2).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-5, 'a near-tie would make top-1 ambiguous'
    order = probs.argsort(dim=1, descending=True)
    labels = [int(order[i, [0, 2, -1][i % 3]]) for i in range(len(files))]
    (root / 'meta' / 'val.txt').write_text(
        ''.join(f'{f.name} {label}\n' for f, label in zip(files, labels)))
    top1 = np.mean([order[i, 0] == label for i, label in enumerate(labels)]) * 100
    top5 = np.mean([label in order[i, :5] for i, label in enumerate(labels)]) * 100

    config = tmp_path / 'zeroshot_10.py'
    config.write_text(f'_base_ = {get_model_info(B32).config!r}\n'
                      f'model = dict(head=dict(classes={classes!r}, templates={TEMPLATES!r}))\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [sys.executable, str(ROOT / 'tools' / 'test.py'), str(config), str(path),
           '--work-dir', str(tmp_path / 'work'), '--cfg-options',
           f'test_dataloader.dataset.data_root={root}', 'test_dataloader.batch_size=4',
           'test_dataloader.num_workers=0']
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for key, expected in (('accuracy/top1', top1), ('accuracy/top5', top5)):
        match = re.search(rf'\|\s*{re.escape(key)}\s*\|\s*([\d.]+)\s*\|', output)
        assert match, output[-3000:]
        assert float(match.group(1)) == pytest.approx(expected, abs=0.01)
