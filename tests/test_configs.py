"""Contract tests over every config: it builds, and resolves to CLIP's facts.

The published checkpoint format is written out here from the model-zoo facts (not read
from our model), so a renamed or reshaped parameter fails the strict load.
"""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmclip.models.utils.transformer import QuickGELU
from mmclip.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
SEED_CONFIGS = sorted((ROOT / 'configs' / 'clip').glob('vit-base-p*_pt-64xb64_in1k*.py'))
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]


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


def test_the_six_seed_configs_exist():
    names = {p.name for p in SEED_CONFIGS}
    assert names == {f'vit-base-p{p}_pt-64xb64_in1k{s}.py'
                     for p in (16, 32) for s in ('', '-384px', '-448px')}


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.name)
def test_every_config_builds_with_clip_facts(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmclip'
    model = build(cfg)
    backbone = model.backbone
    assert isinstance(backbone.pre_norm, nn.LayerNorm), 'CLIP towers are pre-norm'
    assert backbone.patch_embed.projection.bias is None, 'CLIP patch conv has no bias'
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == 1e-5 for m in norms)
    # OpenAI's original towers use QuickGELU; the fine-tunes and LAION's towers erf GELU.
    act = QuickGELU if '_openai_zeroshot' in path.name else nn.GELU
    towers = [backbone] + ([model.text_backbone] if hasattr(model, 'text_backbone') else [])
    acts = [layer.ffn.layers[0][1] for tower in towers for layer in tower.layers]
    assert all(type(a) is act and getattr(a, 'approximate', 'none') == 'none' for a in acts)
    pre = model.data_preprocessor
    # open_clip's LAION-2B ViT-L/14 was trained with mean = std = 0.5.
    mean, std = ([127.5] * 3, [127.5] * 3) if 'large-p14_laion2b' in path.name else (
        CLIP_MEAN, CLIP_STD)
    torch.testing.assert_close(pre.mean.flatten().tolist(), mean)
    torch.testing.assert_close(pre.std.flatten().tolist(), std)
    assert pre.to_rgb


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
