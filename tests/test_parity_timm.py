"""Numerical parity with timm on the real CLIP ViT architectures, B/32 to H/14.

Each pair of models is built without either library's weight initialisation (ViT-H/14 is
2.5 GB in fp32 and its timm init alone takes a minute on 2 cores): timm's model is filled
with random tensors, biases and norms included, renamed through the loader's strict
conversion table and loaded with ``strict=True``; logits and the class-token feature must
match timm's within 1e-4 (max abs, fp32). The L/14 and H/14 cases are marked ``slow``
(CI runs them too).
"""
import gc
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmclip.checkpoint import convert_timm_state_dict
from mmclip.registry import MODELS

timm = pytest.importorskip('timm')
CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / 'clip'
TOL = 1e-4

CASES = [
    ('vit_base_patch32_clip_224', 'vit-base-p32_pt-64xb64_in1k.py'),
    ('vit_base_patch16_clip_224', 'vit-base-p16_pt-64xb64_in1k.py'),
    ('vit_base_patch32_clip_448', 'vit-base-p32_pt-64xb64_in1k-448px.py'),
    ('vit_base_patch16_clip_384', 'vit-base-p16_pt-64xb64_in1k-384px.py'),
    *(pytest.param(name, config, marks=pytest.mark.slow) for name, config in [
        ('vit_large_patch14_clip_224', 'vit-large-p14_clip-openai-pre_3rdparty_in1k.py'),
        ('vit_large_patch14_clip_336',
         'vit-large-p14_clip-openai-in12k-pre_3rdparty_in1k-336px.py'),
        ('vit_huge_patch14_clip_224', 'vit-huge-p14_clip-laion2b-pre_3rdparty_in1k.py'),
    ]),
]


def random_timm(name: str) -> nn.Module:
    """timm's model with every tensor random, so that a mapping mistake anywhere shows in
    the logits. Matrices ~ N(0, 0.02) as timm's init; LayerNorm weights ~ 1 + N(0, 0.1)."""
    with torch.device('meta'):
        model = timm.create_model(name, pretrained=False)
    model = model.to_empty(device='cpu')
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            is_norm_weight = tensor.dim() == 1 and 'norm' in key and key.endswith('weight')
            noise = torch.randn(tensor.shape, generator=generator)
            tensor.copy_(1 + 0.1 * noise if is_norm_weight else 0.02 * noise)
    return model.eval()


@pytest.mark.parametrize('timm_name,config', CASES)
def test_logits_and_features_match_timm(timm_name, config):
    reference = random_timm(timm_name)
    with torch.device('meta'):
        model = MODELS.build(Config.fromfile(CONFIGS / config).model)
    model = model.to_empty(device='cpu').eval()
    # strict: every key of both sides consumed, every shape equal (torch checks shapes).
    model.load_state_dict(convert_timm_state_dict(reference.state_dict()), strict=True)

    size = reference.pretrained_cfg['input_size'][-1]
    assert model.backbone.img_size == size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = reference.forward_features(x)
        expected_feat = reference.forward_head(tokens, pre_logits=True)
        expected = reference.forward_head(tokens)
        feat = model.extract_feat(x)[-1]
        logits = model(x)
    del reference
    gc.collect()
    assert (feat - expected_feat).abs().max().item() <= TOL
    assert (logits - expected).abs().max().item() <= TOL
    # Eval mode runs the last layer for the class token alone; it equals the full layer.
    model.backbone.cls_token_pooling = False
    with torch.no_grad():
        assert (model(x) - logits).abs().max().item() <= 1e-5
    model.backbone.cls_token_pooling = True
    # The check can fail: a ViT default eps of 1e-6 is visibly different.
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-6
    with torch.no_grad():
        assert (model(x) - expected).abs().max().item() > TOL
