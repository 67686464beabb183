"""Contract tests over every config: it builds, resolves to CLIP's facts, and states each
fact once (an evaluation setup reads in at most three files).

The published checkpoint format is written out here from the model-zoo facts (not read
from our model), so a renamed or reshaped parameter fails the strict load.
"""
import ast
import re
from pathlib import Path
from typing import List

import pytest
import torch
from large_models import large_models
from mmengine.config import Config
from torch import nn

from mmclip.models.utils.transformer import QuickGELU
from mmclip.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
SEED_CONFIGS = sorted((ROOT / 'configs' / 'clip').glob('vit-base-p*_pt-64xb64_in1k*.py'))
ZOO_CONFIGS = sorted(p for p in ALL_CONFIGS if '_3rdparty_' in p.name)
ZERO_SHOT_CONFIGS = sorted(p for p in ALL_CONFIGS if '_zeroshot-cls_' in p.name)
# SigLIP's towers are another architecture (see test_every_siglip_config_builds_with_its_facts).
SIGLIP_CONFIGS = sorted(p for p in ALL_CONFIGS if p.parent.name == 'siglip')
CLIP_CONFIGS = sorted(set(ALL_CONFIGS) - set(SIGLIP_CONFIGS))
EVAL_CONFIGS = ZOO_CONFIGS + ZERO_SHOT_CONFIGS
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
SEED_FACTS = ROOT / 'tests' / 'data' / 'reference' / 'model-zoo-facts.md'
QUICK_GELU_ZERO_SHOT = r'_(openai|dfn2b|dfn5b|metaclip-fullcc|metaclip2-worldwide)_zeroshot'


def timm_tags() -> dict:
    """zoo name -> the timm tag its weights come from (seed and large models)."""
    tags = {name: row.timm_tag for name, row in large_models().items()}
    for line in SEED_FACTS.read_text().splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 8 and cells[0].startswith('vit-base'):
            tags[cells[0]] = cells[1]
    return tags


TIMM_TAGS = timm_tags()
HALF_NORMALISED = {name for name, row in large_models().items() if row.half_normalised}

def published_state_dict(patch: int, size: int, num_classes: int = 1000) -> dict:
    """Random tensors with every key and shape of the published ``.pth`` files."""
    C, grid = 768, (size // patch)**2
    shapes = {
        'backbone.cls_token': (1, 1, C),
        'backbone.pos_embed': (1, 1 + grid, C),
        'backbone.patch_embed.projection.weight': (C, 3, patch, patch),
        'backbone.pre_norm.weight': (C, ),
        'backbone.pre_norm.bias': (C, ),
        'backbone.ln1.weight': (C, ),
        'backbone.ln1.bias': (C, ),
        'head.layers.head.weight': (num_classes, C),
        'head.layers.head.bias': (num_classes, ),
    }
    for i in range(12):
        p = f'backbone.layers.{i}.'
        shapes.update({
            p + 'ln1.weight': (C, ), p + 'ln1.bias': (C, ),
            p + 'attn.qkv.weight': (3 * C, C), p + 'attn.qkv.bias': (3 * C, ),
            p + 'attn.proj.weight': (C, C), p + 'attn.proj.bias': (C, ),
            p + 'ln2.weight': (C, ), p + 'ln2.bias': (C, ),
            p + 'ffn.layers.0.0.weight': (4 * C, C), p + 'ffn.layers.0.0.bias': (4 * C, ),
            p + 'ffn.layers.1.weight': (C, 4 * C), p + 'ffn.layers.1.bias': (C, ),
        })
    return {k: torch.randn(s) for k, s in shapes.items()}


def build(cfg: Config) -> nn.Module:
    model_cfg = cfg.model.copy()
    if 'data_preprocessor' in cfg:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def build_on_meta(cfg: Config) -> nn.Module:
    """The model's structure without its weights (ViT-H is 2.5 GB), and the data
    preprocessor on the CPU, whose mean / std are read."""
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    model.data_preprocessor = MODELS.build(dict(type='ClsDataPreprocessor',
                                                **cfg.data_preprocessor))
    return model


def test_the_six_seed_configs_exist():
    names = {p.name for p in SEED_CONFIGS}
    assert names == {f'vit-base-p{p}_pt-64xb64_in1k{s}.py'
                     for p in (16, 32) for s in ('', '-384px', '-448px')}


@pytest.mark.parametrize('path', CLIP_CONFIGS, ids=lambda p: p.name)
def test_every_config_builds_with_clip_facts(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmclip'
    model = build_on_meta(cfg)
    backbone = model.backbone
    assert isinstance(backbone.pre_norm, nn.LayerNorm), 'CLIP towers are pre-norm'
    assert backbone.patch_embed.projection.bias is None, 'CLIP patch conv has no bias'
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == 1e-5 for m in norms)
    # OpenAI's original towers use QuickGELU, and so do DFN's and MetaCLIP's (open_clip's
    # pretrained configs set quick_gelu for them), and the robust fine-tuning recipes that
    # start from OpenAI's (clip_*_openai_*); timm's fine-tunes and LAION's towers erf GELU.
    quick = re.search(QUICK_GELU_ZERO_SHOT, path.name) or (
        path.name.startswith('clip_') and '_openai_' in path.name)
    act = QuickGELU if quick else nn.GELU
    towers = [backbone] + ([model.text_backbone] if hasattr(model, 'text_backbone') else [])
    acts = [layer.ffn.layers[0][1] for tower in towers for layer in tower.layers]
    assert all(type(a) is act and getattr(a, 'approximate', 'none') == 'none' for a in acts)
    if hasattr(model.head, 'proj'):  # CLIP's projection, then the classes
        assert model.head.proj.shape[0] == backbone.embed_dims
    elif not hasattr(model, 'text_backbone'):
        assert model.head.layers.head.in_features == backbone.embed_dims
    pre = model.data_preprocessor
    # timm's LAION-2B ViT-L/14 fine-tunes and open_clip's LAION-2B ViT-L/14 tower were
    # trained with mean = std = 0.5.
    half = path.stem in HALF_NORMALISED or 'large-p14_laion2b' in path.name
    torch.testing.assert_close(pre.mean.flatten().tolist(), [127.5] * 3 if half else CLIP_MEAN)
    torch.testing.assert_close(pre.std.flatten().tolist(), [127.5] * 3 if half else CLIP_STD)
    assert pre.to_rgb


@pytest.mark.parametrize('path', SIGLIP_CONFIGS, ids=lambda p: p.name)
def test_every_siglip_config_builds_with_its_facts(path):
    """SigLIP / SigLIP 2 as open_clip 3.3.0 builds them (its model configs and timm's
    vit_*_siglip_*): no class token and no pre-norm, a patch convolution with a bias,
    LayerNorm eps 1e-6, erf GELU in the image tower (tanh for SO400M/16), attention
    pooling and no image projection, a bidirectional text tower pooled at its last position
    with a projection bias (tanh GELU in SigLIP 2), sigmoid scoring with a bias,
    mean = std = 0.5."""
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmclip'
    model = build_on_meta(cfg)
    backbone, text = model.backbone, model.text_backbone
    assert isinstance(backbone.pre_norm, nn.Identity) and backbone.cls_token is None
    assert backbone.patch_embed.projection.bias is not None
    assert backbone.out_type == 'attn_pool' and backbone.attn_pool is not None
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == 1e-6 for m in norms)
    acts = [layer.ffn.layers[0][1] for layer in backbone.layers] + [
        backbone.attn_pool.ffn.layers[0][1]]
    # timm's vit_so400m_patch16_siglip_* (SigLIP 2's SO400M/16) set act_layer='gelu_tanh'.
    image_approximate = 'tanh' if 'siglip2_vit-so400m-p16_' in path.name else 'none'
    assert all(type(a) is nn.GELU and a.approximate == image_approximate for a in acts)
    text_approximate = 'tanh' if path.name.startswith('siglip2_') else 'none'
    acts = [layer.ffn.layers[0][1] for layer in text.layers]
    assert all(type(a) is nn.GELU and a.approximate == text_approximate for a in acts)
    assert not text.causal and text.pool_type == 'last' and text.projection_bias is not None
    assert not any(layer.attn.causal for layer in text.layers)
    assert model.head.proj is None and model.head.logit_bias is not None
    pre = model.data_preprocessor
    torch.testing.assert_close(pre.mean.flatten().tolist(), [127.5] * 3)
    torch.testing.assert_close(pre.std.flatten().tolist(), [127.5] * 3)
    assert pre.to_rgb


def test_every_zoo_config_has_a_timm_tag():
    assert sorted(TIMM_TAGS) == sorted(p.stem for p in ZOO_CONFIGS)
    assert len(HALF_NORMALISED) == 4


@pytest.mark.parametrize('path', ZOO_CONFIGS, ids=lambda p: p.stem)
def test_zoo_config_resolves_to_timms_data_config(path):
    """Input size, crop_pct, crop_mode, interpolation and mean / std equal timm's
    ``resolve_data_config`` for the tag the weights come from."""
    timm = pytest.importorskip('timm')
    from timm.data import resolve_data_config
    with torch.device('meta'):
        reference = timm.create_model(TIMM_TAGS[path.stem], pretrained=False)
    expected = resolve_data_config(model=reference)
    cfg = Config.fromfile(path)
    resize, crop = [t for t in cfg.test_dataloader.dataset.pipeline
                    if t['type'] in ('CropPctResize', 'CenterCrop')]
    size = cfg.model.backbone.img_size
    assert expected['input_size'] == (3, size, size)
    assert (resize['crop_size'], crop['crop_size']) == (size, size)
    assert (resize['crop_pct'], resize['crop_mode']) == (expected['crop_pct'],
                                                        expected['crop_mode'])
    assert resize['interpolation'] == expected['interpolation']
    torch.testing.assert_close(list(cfg.data_preprocessor.mean),
                               [255 * m for m in expected['mean']])
    torch.testing.assert_close(list(cfg.data_preprocessor.std), [255 * s for s in expected['std']])


@pytest.mark.parametrize('path', SEED_CONFIGS, ids=lambda p: p.name)
def test_seed_config_is_complete_as_mmpretrains(path):
    """Model, data (train / val / test), schedule and runtime, as mmpretrain's CLIP seed
    configs state them (configs/clip/vit-base-p32_pt-64xb64_in1k.py and its bases)."""
    cfg = Config.fromfile(path)
    size = cfg.model.backbone.img_size
    assert cfg.train_dataloader.dataset.type == 'ImageNet'
    assert cfg.train_dataloader.dataset.split == 'train'
    assert cfg.train_dataloader.batch_size == 64 and cfg.train_dataloader.sampler.shuffle
    assert cfg.train_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=size, backend='pillow', interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs')]
    assert cfg.val_dataloader == cfg.test_dataloader
    assert cfg.val_evaluator == cfg.test_evaluator
    assert cfg.optim_wrapper == dict(
        optimizer=dict(type='AdamW', lr=0.003, weight_decay=0.3),
        paramwise_cfg=dict(custom_keys={'.cls_token': dict(decay_mult=0.0),
                                        '.pos_embed': dict(decay_mult=0.0)}),
        clip_grad=dict(max_norm=1.0))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=30,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', T_max=270, by_epoch=True, begin=30, end=300)]
    assert cfg.train_cfg == dict(by_epoch=True, max_epochs=300, val_interval=1)
    assert cfg.auto_scale_lr.base_batch_size == 64 * 64


@pytest.mark.parametrize('path', SEED_CONFIGS, ids=lambda p: p.name)
def test_seed_config_loads_published_format_strictly(path):
    cfg = Config.fromfile(path)
    patch, size = map(int, re.match(r'vit-base-p(\d+)_pt-64xb64_in1k(?:-(\d+)px)?', path.stem)
                      .groups(default='224'))
    assert cfg.model.backbone.img_size == size
    assert cfg.model.head.num_classes == 1000
    crops = [t['crop_size'] for t in cfg.test_dataloader.dataset.pipeline if 'crop_size' in t]
    assert crops == [size]
    model = build(cfg)
    state = published_state_dict(patch, size)
    model.load_state_dict(state, strict=True)
    assert model.backbone.pos_embed.shape == state['backbone.pos_embed'].shape
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)


def config_files(path: Path) -> List[Path]:
    """``path`` and every file its ``_base_`` chain reads, depth first."""
    tree = ast.parse(path.read_text())
    bases = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and any(getattr(t, 'id', None) == '_base_' for t in node.targets)]
    bases = [b for value in bases for b in ([value] if isinstance(value, str) else value)]
    files = [path]
    for base in bases:
        files += config_files((path.parent / base).resolve())
    return files


@pytest.mark.parametrize('path', EVAL_CONFIGS, ids=lambda p: p.name)
def test_evaluation_setup_reads_in_three_files_without_a_schedule(path):
    files = config_files(path)
    assert len(files) <= 3, [str(f.relative_to(ROOT)) for f in files]
    assert len(set(files)) == len(files)
    cfg = Config.fromfile(path)
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        assert key not in cfg, f'{path.name} carries {key}, which evaluation never uses'
    assert cfg.test_dataloader.dataset.type == 'ImageNet'
    assert cfg.test_evaluator == dict(type='Accuracy', topk=(1, 5))


def test_clip_mean_and_std_are_stated_once():
    configs = sorted((ROOT / 'configs').rglob('*.py'))
    for fact, where in (('0.48145466', ['configs/_base_/imagenet_eval.py']),
                        ('0.26862954', ['configs/_base_/imagenet_eval.py']),
                        ('122.77', [])):  # the mean times 255, spelled out
        stating = [str(p.relative_to(ROOT)) for p in configs if fact in p.read_text()]
        assert stating == where, fact
