"""Numerical parity with timm on the real CLIP ViT-B architectures (random weights).

timm's state dict is renamed with the loader's conversion table and loaded strictly;
logits and the class-token feature must match timm's within 1e-4 (max abs, fp32).
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

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
]


@pytest.mark.parametrize('timm_name,config', CASES)
def test_logits_and_features_match_timm(timm_name, config):
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False).eval()
    model = MODELS.build(Config.fromfile(CONFIGS / config).model).eval()
    # strict: every key of both sides consumed, every shape equal (torch checks shapes).
    model.load_state_dict(convert_timm_state_dict(reference.state_dict()), strict=True)

    size = reference.pretrained_cfg['input_size'][-1]
    assert model.backbone.img_size == size
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected_feat = reference.forward_head(reference.forward_features(x), pre_logits=True)
        expected = reference.forward_head(reference.forward_features(x))
        feat = model.extract_feat(x)[-1]
        logits = model(x)
    assert (feat - expected_feat).abs().max().item() <= TOL
    assert (logits - expected).abs().max().item() <= TOL
    # Eval mode runs the last layer for the class token alone; it equals the full layer.
    model.backbone.cls_token_pooling = False
    with torch.no_grad():
        assert (model(x) - logits).abs().max().item() <= 1e-5
    model.backbone.cls_token_pooling = True
    # The check can fail: a ViT default eps of 1e-6 is visibly different.
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-6
    with torch.no_grad():
        assert (model(x) - expected).abs().max().item() > TOL
