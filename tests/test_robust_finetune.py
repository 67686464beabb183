"""Robust fine-tuning of CLIP on tiny towers: the zero-shot-initialised classifier,
tools/wise_ft.py, the FLYP loss and the recipe configs.

The towers are open_clip ``CLIP`` models with random weights and a tiny architecture
(2 layers, width 32, 32 px images), saved as open_clip's files are; everything is compared
with open_clip's own outputs or with the zero-shot model, never with numbers written here.
"""
import json
from pathlib import Path

import pytest
import torch
from conftest import load_tool
from mmengine.config import Config
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from mmclip.checkpoint import load_checkpoint
from mmclip.models.classifiers.zero_shot_init import zero_shot_init_state_dict
from mmclip.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ['cat', 'dog', 'horse', 'rocket']  # sorted: the label order of their folders
TEMPLATES = ['a photo of a {}.', 'art of the {}.']
TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128)
EMBED = 16
QUICK_GELU = dict(type='QuickGELU')
VISION = dict(type='VisionTransformer', arch=TINY, img_size=32, patch_size=16, pre_norm=True,
              norm_cfg=dict(type='LN', eps=1e-5), act_cfg=QUICK_GELU, out_type='cls_token',
              final_norm=True)
TEXT = dict(type='CLIPTextTransformer', arch=TINY, out_channels=EMBED, act_cfg=QUICK_GELU)


def tiny_open_clip(seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    return CLIP(embed_dim=EMBED, quick_gelu=True,
                vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=16,
                                         image_size=32),
                text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2,
                                     layers=2)).eval()


def zero_shot_cfg(classes=CLASSES, templates=TEMPLATES) -> dict:
    return dict(type='ZeroShotClassifier', backbone=VISION, text_backbone=TEXT,
                head=dict(type='ZeroShotClsHead', in_channels=32, out_channels=EMBED,
                          classes=classes, templates=templates))


def classifier_cfg(num_classes: int = len(CLASSES)) -> dict:
    return dict(type='ImageClassifier', backbone=VISION,
                head=dict(type='CLIPLinearClsHead', num_classes=num_classes, in_channels=32,
                          out_channels=EMBED))


@pytest.fixture(scope='module')
def open_clip_file(tmp_path_factory):
    """(tiny open_clip CLIP, its open_clip_pytorch_model.bin)."""
    oc = tiny_open_clip()
    path = tmp_path_factory.mktemp('tower') / 'open_clip_pytorch_model.bin'
    torch.save({k: v.contiguous() for k, v in oc.state_dict().items()}, path)
    return oc, path


def loaded_zero_shot(path: Path, **kwargs) -> torch.nn.Module:
    model = MODELS.build(zero_shot_cfg(**kwargs)).eval()
    load_checkpoint(model, str(path), strict=True)
    return model


# ---- 1. the zero-shot-initialised classifier -----------------------------------------------
def test_zero_shot_initialised_classifier_gives_the_zero_shot_logits(open_clip_file):
    oc, path = open_clip_file
    zero_shot = loaded_zero_shot(path)
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = zero_shot(images)
        # The tiny tower is open_clip's: same image embedding and scale.
        torch.testing.assert_close(zero_shot.encode_image(images),
                                   oc.encode_image(images, normalize=True), atol=1e-5, rtol=0)
    classifier = MODELS.build(classifier_cfg()).eval()
    state = zero_shot_init_state_dict(zero_shot)
    assert not any(k.startswith('text_backbone.') for k in state)
    classifier.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits = classifier(images)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert expected.abs().max() > 0.1, 'logits large enough for the comparison to mean something'
    assert torch.equal(classifier.head.layers.head.bias, torch.zeros(len(CLASSES)))
    torch.testing.assert_close(classifier.head.layers.head.weight.norm(dim=1),
                               oc.logit_scale.exp().expand(len(CLASSES)), atol=1e-5, rtol=0)


def write_zero_shot_config(folder: Path) -> Path:
    path = folder / 'tiny_zeroshot.py'
    path.write_text(f"default_scope = 'mmclip'\nmodel = {zero_shot_cfg()!r}\n")
    return path


def test_zeroshot_to_classifier_tool_writes_a_checkpoint_once(open_clip_file, tmp_path, capsys):
    oc, path = open_clip_file
    tool = load_tool('model_converters/zeroshot_to_classifier.py')
    config = write_zero_shot_config(tmp_path)
    dst = tmp_path / 'zero_shot_classifier.pth'
    classes = ['tree', 'car', 'cat']
    assert tool.main([str(config), str(dst), '--pretrained', str(path),
                      '--classes', ','.join(classes), '--templates', '|'.join(TEMPLATES)]) == 0
    assert '3 classes x 2 templates' in capsys.readouterr().out
    classifier = MODELS.build(classifier_cfg(num_classes=3)).eval()
    load_checkpoint(classifier, str(dst), strict=True)
    zero_shot = loaded_zero_shot(path, classes=classes)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(classifier(images), zero_shot(images), atol=1e-5, rtol=0)

    # Never over an existing file, and a one-line error for bad input.
    before = dst.read_bytes()
    assert tool.main([str(config), str(dst), '--pretrained', str(path)]) == 1
    assert dst.read_bytes() == before
    assert tool.main([str(config), str(tmp_path / 'new.pth')]) == 1  # no weights given
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(':')[0] for line in err] == ['ERROR', 'ERROR']
    assert 'exists' in err[0] and 'pretrained' in err[1]
    assert not (tmp_path / 'new.pth').exists()


# ---- 2. tools/wise_ft.py -------------------------------------------------------------------
wise_ft = load_tool('wise_ft.py')
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
CLIP_PREPROCESSOR = dict(mean=[122.770938, 116.7460125, 104.09373615],
                         std=[68.5005327, 66.6321579, 70.32316305], to_rgb=True)


@pytest.fixture(scope='module')
def end_points(open_clip_file, tmp_path_factory):
    """(zero-shot classifier checkpoint, "fine-tuned" checkpoint: every weight moved)."""
    _, path = open_clip_file
    folder = tmp_path_factory.mktemp('end_points')
    zero_shot = zero_shot_init_state_dict(loaded_zero_shot(path))
    gen = torch.Generator().manual_seed(3)
    fine_tuned = {k: v + 0.05 * (v.abs().mean() + 0.01) * torch.randn(v.shape, generator=gen)
                  for k, v in zero_shot.items()}
    torch.save({'state_dict': zero_shot}, folder / 'zero_shot.pth')
    torch.save({'state_dict': fine_tuned, 'meta': {'iter': 10}}, folder / 'fine_tuned.pth')
    return folder / 'zero_shot.pth', folder / 'fine_tuned.pth'


def read_state(path: Path) -> dict:
    return torch.load(path, weights_only=True)['state_dict']


def logits_of(state: dict, images: torch.Tensor) -> torch.Tensor:
    model = MODELS.build(classifier_cfg()).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(images)


def test_alpha_end_points_are_exact_and_half_is_the_midpoint(end_points, tmp_path, capsys):
    zs_path, ft_path = end_points
    assert wise_ft.main([str(zs_path), str(ft_path), '--alphas', '1', '0.5', '0',
                         '--out', str(tmp_path / 'out')]) == 0
    zs, ft = read_state(zs_path), read_state(ft_path)
    alpha0 = read_state(tmp_path / 'out' / 'wise_ft_alpha_0.000.pth')
    alpha1 = read_state(tmp_path / 'out' / 'wise_ft_alpha_1.000.pth')
    half = read_state(tmp_path / 'out' / 'wise_ft_alpha_0.500.pth')
    assert alpha0.keys() == zs.keys() == alpha1.keys() == half.keys()
    for key in zs:
        assert torch.equal(alpha0[key], zs[key]), key
        assert torch.equal(alpha1[key], ft[key]), key
        torch.testing.assert_close(half[key], (zs[key] + ft[key]) / 2, atol=1e-7, rtol=1e-6)
        assert not torch.equal(zs[key], ft[key]), 'every weight moved, so the test can fail'
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(logits_of(alpha0, images), logits_of(zs, images))
    assert torch.equal(logits_of(alpha1, images), logits_of(ft, images))
    meta = torch.load(tmp_path / 'out' / 'wise_ft_alpha_0.500.pth', weights_only=True)['meta']
    assert meta['wise_ft'] == dict(alpha=0.5, zero_shot=str(zs_path), fine_tuned=str(ft_path))


def test_wise_ft_refuses_mismatched_checkpoints_and_foreign_files(end_points, tmp_path, capsys):
    zs_path, ft_path = end_points
    other = read_state(ft_path)
    other['head.layers.head.weight'] = other['head.layers.head.weight'][:3]
    torch.save(other, tmp_path / 'three_classes.pth')
    out = tmp_path / 'out'
    assert wise_ft.main([str(zs_path), str(tmp_path / 'three_classes.pth'), '--out',
                         str(out), '--alphas', '0.5']) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('ERROR: head.layers.head.weight: ZERO_SHOT has torch.float32 (4, 16)')
    assert '\n' not in err and not list(out.glob('*.pth'))

    foreign = out / 'wise_ft_alpha_0.500.pth'
    foreign.write_bytes(b'my own file')
    assert wise_ft.main([str(zs_path), str(ft_path), '--out', str(out), '--alphas', '0',
                         '0.5']) == 1
    assert 'was not written by tools/wise_ft.py' in capsys.readouterr().err
    assert foreign.read_bytes() == b'my own file'
    assert not (out / 'wise_ft_alpha_0.000.pth').exists(), 'refused before any work'
    foreign.unlink()
    # Its own files it may write again (a second run with more alphas).
    for _ in range(2):
        assert wise_ft.main([str(zs_path), str(ft_path), '--out', str(out), '--alphas', '0',
                             '0.5']) == 0
    record = json.loads((out / 'wise_ft.json').read_text())
    assert sorted(record['written']) == ['wise_ft_alpha_0.000.pth', 'wise_ft_alpha_0.500.pth']
    # ... but not once it was changed by someone else.
    with open(out / 'wise_ft_alpha_0.000.pth', 'ab') as f:
        f.write(b'\0')
    assert wise_ft.main([str(zs_path), str(ft_path), '--out', str(out), '--alphas', '0']) == 1
    assert 'changed since' in capsys.readouterr().err


def class_folder(root: Path, images_dir: Path, gray: bool, limit: int = 100) -> Path:
    """``<root>/<class>/<photo>``: the first ``limit`` test photos spread over CLASSES,
    optionally gray (a stand-in distribution shift)."""
    from PIL import Image
    photos = sorted(p for p in images_dir.iterdir() if p.suffix in ('.png', '.jpg'))[:limit]
    for i, photo in enumerate(photos):
        folder = root / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(photo) as img:
            img = img.convert('L' if gray else 'RGB')
            img.thumbnail((48, 48))
            img.save(folder / f'{photo.stem}.png')
    return root


def write_eval_config(path: Path, data_root: Path) -> Path:
    # serialize_data=False: mmengine's serialisation runs a full gc.collect() per build.
    dataset = dict(type='CustomDataset', data_root=str(data_root), pipeline=PIPELINE,
                   serialize_data=False)
    cfg = dict(default_scope='mmclip', model=classifier_cfg(),
               data_preprocessor=dict(num_classes=len(CLASSES), **CLIP_PREPROCESSOR),
               test_dataloader=dict(batch_size=4, num_workers=0, dataset=dataset,
                                    sampler=dict(type='DefaultSampler', shuffle=False)),
               test_evaluator=dict(type='Accuracy', topk=(1, )), test_cfg=dict(),
               env_cfg=dict(dist_cfg=dict(backend='gloo')),
               visualizer=dict(type='ScalarVisualizer',
                               vis_backends=[dict(type='LocalVisBackend')]))
    Config(cfg).dump(str(path))
    return path


def eval_set_of(config: Path) -> tuple:
    """(the config's model with random weights, its whole test set as one batch)."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    from mmclip.registry import DATASETS
    cfg = Config.fromfile(config)
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor)).eval()
    with DefaultScope.overwrite_default_scope('mmclip'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    return model, model.data_preprocessor(
        pseudo_collate([dataset[i] for i in range(len(dataset))]))


def direct_top1(state: dict, eval_set: tuple) -> float:
    """Top-1 of the weights on a ``eval_set_of`` result, computed here without a Runner."""
    model, batch = eval_set
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        predicted = model(batch['inputs']).argmax(dim=1)
    labels = torch.cat([s.gt_label for s in batch['data_samples']])
    return 100.0 * (predicted == labels).float().mean().item()


def test_wise_ft_end_to_end_evaluates_and_draws_the_curve(end_points, tmp_path, images_dir,
                                                         capsys):
    from PIL import Image
    zs_path, ft_path = end_points
    configs = [write_eval_config(tmp_path / 'in_dist.py',
                                 class_folder(tmp_path / 'rgb', images_dir, gray=False)),
               write_eval_config(tmp_path / 'gray_shift.py',
                                 class_folder(tmp_path / 'gray', images_dir, gray=True))]
    out = tmp_path / 'out'
    assert wise_ft.main([str(zs_path), str(ft_path), '--out', str(out), '--alphas', '0', '0.5',
                         '1', '--eval'] + [str(c) for c in configs]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / 'wise_ft.json').read_text())
    eval_sets = [eval_set_of(config) for config in configs]
    assert sorted(record['results']) == ['0.000', '0.500', '1.000']
    for alpha in ('0.000', '0.500', '1.000'):
        state = read_state(out / f'wise_ft_alpha_{alpha}.pth')
        values = []
        for config, eval_set in zip(configs, eval_sets):
            top1 = record['results'][alpha][config.stem]['accuracy/top1']
            assert top1 == pytest.approx(direct_top1(state, eval_set)), (alpha, config.stem)
            values.append(top1)
        # The table line of this alpha: both sets and the (one-set) shift mean.
        assert f'{alpha} | {values[0]:.2f} | {values[1]:.2f} | {values[1]:.2f}' in printed
    assert 'alpha | in_dist | gray_shift | shift mean' in printed
    assert sorted(record['written']) == ['wise_ft_alpha_0.000.pth', 'wise_ft_alpha_0.500.pth',
                                         'wise_ft_alpha_1.000.pth', 'wise_ft_curve.png']
    with Image.open(out / 'wise_ft_curve.png') as png:
        assert png.format == 'PNG' and png.size == (600, 450)
        colors = {c for _, c in png.convert('RGB').getcolors(maxcolors=1 << 20)}
    # The end-point markers are drawn in their own colours (green, red: matplotlib's tab:).
    assert (44, 160, 44) in colors and (214, 39, 40) in colors


# ---- 3. FLYP ---------------------------------------------------------------------------------
def test_clip_contrastive_loss_equals_open_clips_clip_loss():
    from open_clip.loss import ClipLoss

    from mmclip.models.losses import clip_contrastive_loss
    gen = torch.Generator().manual_seed(5)
    for batch, dim, scale in ((2, 8, 1.0), (7, 16, 14.285), (32, 64, 100.0)):
        image = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen), dim=-1)
        text = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen), dim=-1)
        scale = torch.tensor(scale)
        torch.testing.assert_close(clip_contrastive_loss(image, text, scale),
                                   ClipLoss()(image, text, scale), atol=1e-6, rtol=1e-6)


def flyp_cfg(train_templates=None) -> dict:
    return dict(zero_shot_cfg(), type='FLYPClassifier', train_templates=train_templates)


def test_flyp_loss_is_clip_loss_on_the_models_features_and_trains_both_towers(open_clip_file):
    import open_clip
    from open_clip.loss import ClipLoss

    from mmclip.structures import DataSample
    oc, path = open_clip_file
    model = MODELS.build(flyp_cfg())
    load_checkpoint(model, str(path), strict=True)
    model.train()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    labels = [2, 0, 2, 1, 3]
    samples = [DataSample().set_gt_label(y) for y in labels]
    prompts = model.training_prompts(torch.tensor(labels))
    assert [p in {t.format(CLASSES[y]) for t in TEMPLATES} for p, y in zip(prompts, labels)] \
        == [True] * 5
    loss = model(images, samples, mode='loss')['loss']
    # The same loss from open_clip's own towers, features and ClipLoss.
    with torch.no_grad():
        expected = ClipLoss()(oc.encode_image(images, normalize=True),
                              oc.encode_text(open_clip.tokenize(prompts), normalize=True),
                              oc.logit_scale.exp())
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=0)
    assert int(model.flyp_step) == 1 and not model.head_built
    assert model.training_prompts(torch.tensor(labels * 4)) != prompts * 4, 'a new draw'
    loss.backward()
    for name in ('backbone.patch_embed.projection.weight', 'backbone.layers.1.attn.qkv.weight',
                 'head.proj', 'head.logit_scale', 'text_backbone.layers.0.attn.qkv.weight',
                 'text_backbone.projection', 'text_backbone.token_embedding.weight'):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


# ---- 4. the recipes, shrunk to the tiny towers and a tiny folder ---------------------------
train_tool = load_tool('train.py')


@pytest.fixture(scope='module')
def folder(tmp_path_factory, images_dir) -> Path:
    """``train/<class>/<photo>`` over CLASSES: 8 test photos, 2 per class."""
    root = tmp_path_factory.mktemp('folder')
    class_folder(root / 'train', images_dir, gray=False, limit=8)
    return root


def shrink_recipe(name: str, root: Path, pretrained: Path, work_dir: Path, max_epochs: int,
                  lr: float, deterministic: bool = False) -> Path:
    """``configs/clip/<name>`` with the tiny towers at 32 px on ``root``'s folders, the hooks
    loading ``pretrained``; the recipe (model type, head, hooks, optimizer, clipping,
    schedule shape, pipelines) is the config's own. A test-size LR without warm-up lets a
    few steps show, and ``deterministic`` swaps the random crop for the test pipeline, so
    that a resumed run can be compared bit for bit (mmengine does not save the
    generators)."""
    cfg = Config.fromfile(ROOT / 'configs' / 'clip' / name)
    cfg.model.backbone.update(arch=TINY, img_size=32, patch_size=16)
    cfg.model.head.update(in_channels=32, out_channels=EMBED)
    if cfg.model.type == 'FLYPClassifier':
        cfg.model.text_backbone.update(arch=TINY, out_channels=EMBED)
        cfg.model.head.classes = CLASSES
    else:
        cfg.model.head.num_classes = len(CLASSES)
    cfg.data_preprocessor.num_classes = len(CLASSES)
    for hook in cfg.custom_hooks:
        hook['checkpoint'] = str(pretrained)
        if 'text_backbone' in hook:
            hook['text_backbone'].update(arch=TINY, out_channels=EMBED)
    test_pipeline = [dict(t, **{k: 32 for k in ('scale', 'crop_size') if k in t})
                     for t in cfg.test_dataloader.dataset.pipeline]
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        pipeline = [dict(t, **{k: 32 for k in ('scale', 'crop_size') if k in t})
                    for t in loader.dataset.pipeline]
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(root), data_prefix='train', serialize_data=False,
                              pipeline=test_pipeline if deterministic else pipeline)
        if cfg.model.type == 'FLYPClassifier':
            loader.dataset.classes = CLASSES
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.param_scheduler = [s for s in cfg.param_scheduler if s['type'] != 'LinearLR']
    cfg.train_cfg.max_epochs = max_epochs
    cfg.default_hooks.logger.interval = 1
    cfg.visualizer = dict(type='ScalarVisualizer', vis_backends=[dict(type='LocalVisBackend')])
    cfg.experiment_name = f'{work_dir.name}_{max_epochs}_{name}'
    path = work_dir.parent / f'{work_dir.name}_{max_epochs}_{name}'
    cfg.dump(str(path))
    return path


def train(config: Path, work_dir: Path, *extra: str) -> None:
    assert train_tool.main([str(config), '--work-dir', str(work_dir), *extra]) == 0


def fixed_batch_loss(config: Path, state: dict, folder: Path) -> float:
    """The model's training loss on all of the folder's images (FLYP: with the prompts of
    its first step), without augmentation."""
    cfg = Config.fromfile(config)
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    model.load_state_dict(state, strict=False)  # a zero-shot init has no text tower
    dataset = dict(cfg.test_dataloader.dataset, data_root=str(folder))
    cfg.test_dataloader.dataset = dataset
    _, batch = eval_set_of_cfg(cfg, model)
    if hasattr(model, 'flyp_step'):
        # One image per class: the contrastive loss of a batch with two images of a class
        # has a floor that training on other batches need not lower.
        labels = [int(s.gt_label) for s in batch['data_samples']]
        keep = [labels.index(c) for c in range(len(CLASSES))]
        batch = dict(inputs=batch['inputs'][keep],
                     data_samples=[batch['data_samples'][i] for i in keep])
        model.flyp_step.zero_()
    model.eval()
    with torch.no_grad():
        return model(**batch, mode='loss')['loss'].item()


def eval_set_of_cfg(cfg: Config, model) -> tuple:
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    from mmclip.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmclip'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    return model, model.data_preprocessor(
        pseudo_collate([dataset[i] for i in range(len(dataset))]))


def read_checkpoint(path: Path) -> dict:
    from mmclip.checkpoint import read_checkpoint_file
    return read_checkpoint_file(str(path))


def assert_same(a, b, where: str = '') -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def train_and_resume(name: str, folder: Path, pretrained: Path, tmp_path: Path,
                     lr: float) -> Path:
    """Two epochs straight, and one epoch then a resumed second one: weights, optimizer
    state and schedulers must be equal bit for bit. Returns the straight run's config."""
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    config = shrink_recipe(name, folder, pretrained, straight, 2, lr, deterministic=True)
    train(config, straight)
    train(shrink_recipe(name, folder, pretrained, resumed, 1, lr, deterministic=True), resumed)
    train(shrink_recipe(name, folder, pretrained, resumed, 2, lr, deterministic=True), resumed,
          '--resume')
    log = sorted(resumed.rglob('*.log'))[-1].read_text()
    assert 'skipped' in log and 'Epoch(train)   [1]' not in log, 'resumed, not restarted'
    a, b = read_checkpoint(straight / 'epoch_2.pth'), read_checkpoint(resumed / 'epoch_2.pth')
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_same(a[key], b[key], key)
    return config


def run_log(work_dir: Path) -> str:
    return '\n'.join(p.read_text() for p in sorted(work_dir.rglob('*.log')))


@pytest.mark.parametrize('recipe', ['zs-init-ft', 'zs-init-lp'])
def test_zero_shot_init_recipes_train_save_and_resume_exactly(recipe, open_clip_file, folder,
                                                              tmp_path):
    oc, path = open_clip_file
    name = f'clip_vit-base-p16_openai_{recipe}_custom.py'
    lr = 1e-3 if recipe == 'zs-init-ft' else 1e-1  # a lone linear layer of norm-14 rows
    config = train_and_resume(name, folder, path, tmp_path, lr)
    log = run_log(tmp_path / 'straight')
    assert 'ZeroShotInitHook: initialised the classifier' in log
    assert '4 classes x 80 templates' in log
    start = zero_shot_init_state_dict(loaded_zero_shot(path, templates='openai_imagenet'))
    trained = read_checkpoint(tmp_path / 'straight' / 'epoch_2.pth')['state_dict']
    before = fixed_batch_loss(config, start, folder)
    after = fixed_batch_loss(config, trained, folder)
    assert after < 0.9 * before, (before, after)
    moved = {k for k in start if not torch.equal(start[k], trained[k])}
    if recipe == 'zs-init-lp':
        assert moved == {'head.layers.head.weight', 'head.layers.head.bias'}
    else:
        assert {'backbone.layers.0.attn.qkv.weight', 'head.proj'} <= moved


def test_lp_ft_starts_from_the_linear_probe_and_resumes_exactly(open_clip_file, folder,
                                                                tmp_path):
    oc, path = open_clip_file
    probe = shrink_recipe('clip_vit-base-p16_openai_zs-init-lp_custom.py', folder, path,
                          tmp_path / 'probe', 1, 1e-1)
    train(probe, tmp_path / 'probe')
    probed = tmp_path / 'probe' / 'epoch_1.pth'
    name = 'clip_vit-base-p16_openai_lp-ft_custom.py'
    assert 'zs-init-lp_custom/epoch_10.pth' in (ROOT / 'configs/clip' / name).read_text()
    config = train_and_resume(name, folder, probed, tmp_path, 1e-3)
    log = run_log(tmp_path / 'straight')
    assert f'Loaded checkpoint {probed}' in log and 'Dropped the head' not in log
    start = read_checkpoint(probed)['state_dict']
    trained = read_checkpoint(tmp_path / 'straight' / 'epoch_2.pth')['state_dict']
    before = fixed_batch_loss(config, start, folder)
    assert fixed_batch_loss(config, trained, folder) < 0.9 * before


def test_flyp_recipe_trains_both_towers_saves_and_resumes_exactly(open_clip_file, folder,
                                                                  tmp_path):
    oc, path = open_clip_file
    config = train_and_resume('clip_vit-base-p16_openai_flyp_custom.py', folder, path,
                              tmp_path, 1e-3)
    start = loaded_zero_shot(path).state_dict()
    trained = read_checkpoint(tmp_path / 'straight' / 'epoch_2.pth')['state_dict']
    assert int(trained['flyp_step']) == 4  # 8 images, batch 4, 2 epochs
    for key in ('backbone.layers.0.attn.qkv.weight', 'head.proj', 'head.logit_scale',
                'text_backbone.layers.0.attn.qkv.weight', 'text_backbone.projection'):
        assert not torch.equal(start[key], trained[key]), key
    before = fixed_batch_loss(config, start, folder)
    assert fixed_batch_loss(config, trained, folder) < 0.9 * before
    assert 'accuracy/top1' in run_log(tmp_path / 'straight')  # zero-shot with trained towers
    # mmengine saves an epoch's checkpoint after its training steps, before its validation
    # (and again after it only when the best score improved): such a file holds class
    # embeddings of older towers. Loading any of them gives the head of its own towers.
    from mmclip.models.utils.zero_shot import build_class_embeddings
    stale = 0
    for epoch in (1, 2):
        path = tmp_path / 'straight' / f'epoch_{epoch}.pth'
        model = MODELS.build(Config.fromfile(config).model).eval()
        load_checkpoint(model, str(path), strict=True)
        with torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        expected = build_class_embeddings(model.text_backbone, CLASSES, model.head.templates)
        torch.testing.assert_close(model.head.class_embeddings, expected, atol=1e-6, rtol=0)
        saved = read_checkpoint(path)['state_dict']['head.class_embeddings']
        stale += not torch.allclose(saved, expected, atol=1e-6, rtol=0)
    assert stale, 'neither file held stale embeddings: the case above went untested'


def test_wise_ft_of_a_flyp_model_interpolates_both_towers(open_clip_file, folder, tmp_path):
    """ZERO_SHOT the open_clip file itself, FINE_TUNED a FLYP checkpoint: alpha 0 is the
    zero-shot model and alpha 1 the FLYP model, each with its head rebuilt from its own
    (interpolated) text tower."""
    oc, path = open_clip_file
    name = 'clip_vit-base-p16_openai_flyp_custom.py'
    config = shrink_recipe(name, folder, path, tmp_path / 'work', 1, 1e-3, deterministic=True)
    train(config, tmp_path / 'work')
    flyp = tmp_path / 'work' / 'epoch_1.pth'
    out = tmp_path / 'wise_ft'
    assert wise_ft.main([str(path), str(flyp), '--out', str(out), '--alphas', '0', '1']) == 0
    cfg = Config.fromfile(config)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))

    def logits(checkpoint: Path) -> torch.Tensor:
        model = MODELS.build(cfg.model).eval()
        load_checkpoint(model, str(checkpoint), strict=True)
        with torch.no_grad():
            return model(images)

    theirs = open_clip_logits(oc, images, CLASSES, cfg.model.head.templates)
    torch.testing.assert_close(logits(out / 'wise_ft_alpha_0.000.pth'), theirs, atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(logits(out / 'wise_ft_alpha_1.000.pth'), logits(flyp),
                               atol=1e-6, rtol=0)
    assert (logits(flyp) - theirs).abs().max() > 1e-3, 'FLYP moved the model'


def open_clip_logits(oc, images, classes, templates) -> torch.Tensor:
    """open_clip's own zero-shot logits (its classifier builder and encoders)."""
    import open_clip

    from mmclip.models.utils.zero_shot import resolve_prompts
    templates = resolve_prompts(classes, templates)[1]
    with torch.no_grad():
        weights = open_clip.build_zero_shot_classifier(
            oc, tokenizer=open_clip.get_tokenizer('ViT-B-32'), classnames=classes,
            templates=templates, device='cpu')
        return oc.logit_scale.exp() * oc.encode_image(images, normalize=True) @ weights


GATHER_SCRIPT = '''
import importlib.util
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# The loss module alone (it needs torch only): importing mmclip in each process is slow.
spec = importlib.util.spec_from_file_location('clip_loss', CLIP_LOSS_FILE)
clip_loss = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clip_loss)


class Towers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image, self.text = torch.nn.Linear(6, 4), torch.nn.Linear(5, 4)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x, t):
        n = torch.nn.functional.normalize
        return n(self.image(x), dim=-1), n(self.text(t), dim=-1), self.logit_scale.exp()


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g)


def result(model, loss, **extra):
    return dict(loss=loss.detach(), grads={k: p.grad for k, p in model.named_parameters()},
                **extra)


def rank_main(rank, port, out):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=2)
    model = Towers()
    x, t = batch()
    image, text, scale = model(x[4 * rank:4 * rank + 4], t[4 * rank:4 * rank + 4])
    gather = clip_loss.gather_across_ranks
    loss = clip_loss.clip_contrastive_loss(gather(image), gather(text), scale)
    loss.backward()
    for p in model.parameters():  # what DistributedDataParallel does: average
        dist.all_reduce(p.grad)
        p.grad /= 2
    local = clip_loss.clip_contrastive_loss(image, text, scale)  # this rank's 4 pairs only
    if rank == 0:
        torch.save(result(model, loss, local=local.detach()), out + '.two')
    dist.destroy_process_group()


if __name__ == '__main__':
    model = Towers()  # the whole batch in one process, nothing gathered
    loss = clip_loss.clip_contrastive_loss(*model(*batch()))
    loss.backward()
    torch.save(result(model, loss), sys.argv[2] + '.one')
    mp.spawn(rank_main, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
'''


def test_flyp_loss_over_two_ranks_equals_one_process_with_the_whole_batch(tmp_path):
    """Each of 2 gloo ranks holds half the batch; with the features gathered, the loss and
    the rank-averaged gradients (as DistributedDataParallel averages them) equal one
    process's on the whole batch."""
    import os
    import socket
    import subprocess
    import sys
    script = tmp_path / 'gather.py'
    loss_file = ROOT / 'mmclip' / 'models' / 'losses' / 'clip_loss.py'
    script.write_text(GATHER_SCRIPT.replace('CLIP_LOSS_FILE', repr(str(loss_file))))
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, str(script), str(port), str(tmp_path / 'out')],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Warning' not in result.stderr, result.stderr
    one, two = (torch.load(tmp_path / f'out.{n}', weights_only=True) for n in ('one', 'two'))
    torch.testing.assert_close(two['loss'], one['loss'], atol=1e-6, rtol=0)
    for key, grad in one['grads'].items():
        torch.testing.assert_close(two['grads'][key], grad, atol=1e-6, rtol=1e-5)
    # Without the gathering a rank's loss sees only its own 4 pairs: another value.
    assert abs(two['local'].item() - one['loss'].item()) > 1e-3


def test_zero_shot_init_hook_takes_the_training_sets_names_and_refuses_a_wrong_count(
        open_clip_file):
    """classes=None builds the head from the training set's class names, in label order; a
    class list of another length than the head is one clear error, before any loading."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger

    from mmclip.engine import ZeroShotInitHook
    oc, path = open_clip_file
    names = ['rocket', 'cat', 'horse', 'dog']  # label order, not sorted
    model = MODELS.build(classifier_cfg()).eval()
    runner = SimpleNamespace(
        model=model, cfg=Config(dict(model=classifier_cfg())),
        logger=MMLogger.get_instance('zero_shot_init_hook_test'),
        train_dataloader=SimpleNamespace(dataset=SimpleNamespace(metainfo=dict(classes=names))))
    hook = ZeroShotInitHook(str(path), text_backbone=TEXT, templates=TEMPLATES)
    hook.before_train(runner)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        torch.testing.assert_close(model(images), loaded_zero_shot(path, classes=names)(images),
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r'ZeroShotInitHook: 3 class names for a head with '
                                         r'num_classes=4'):
        ZeroShotInitHook(str(path), text_backbone=TEXT, classes=names[:3],
                         templates=TEMPLATES).before_train(runner)
