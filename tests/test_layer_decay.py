"""Layer-wise LR decay: every parameter's LR and weight decay against the formula."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper as mmengine_build_optim_wrapper
from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
from mmengine.registry import DefaultScope

import mmclip.engine  # noqa: F401  (registers the constructor)
from mmclip.registry import MODELS

NUM_LAYERS = 3
BASE_LR, BASE_WD, DECAY = 0.1, 0.05, 0.6


def tiny_classifier(frozen_stages: int = -1):
    return MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', img_size=32, patch_size=16, pre_norm=True,
                      arch=dict(embed_dims=16, num_layers=NUM_LAYERS, num_heads=2,
                                feedforward_channels=32),
                      frozen_stages=frozen_stages),
        head=dict(type='VisionTransformerClsHead', num_classes=5, in_channels=16)))


def optim_cfg(**paramwise):
    return dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
                constructor='LearningRateDecayOptimWrapperConstructor',
                paramwise_cfg=dict(layer_decay_rate=DECAY, **paramwise))


def build_optim_wrapper(model, cfg):
    """As the Runner builds it, with mmclip as the default scope."""
    with DefaultScope.overwrite_default_scope('mmclip'):
        return mmengine_build_optim_wrapper(model, cfg)


def expected_layer_id(name: str) -> int:
    """Written from the recipe (BEiT), independently of the constructor's code."""
    if name in ('backbone.cls_token', 'backbone.pos_embed') or name.startswith(
            ('backbone.patch_embed.', 'backbone.pre_norm.')):
        return 0
    if name.startswith('backbone.layers.'):
        return int(name.split('.')[2]) + 1
    assert name.startswith(('backbone.ln1.', 'head.')), name
    return NUM_LAYERS + 1


def lr_and_wd_of_each_param(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    found = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            assert names[id(p)] not in found, f'{names[id(p)]} is in two groups'
            found[names[id(p)]] = (group['lr'], group['weight_decay'])
    return found


def test_each_param_gets_the_formula_lr_and_no_decay_on_1d_and_tokens():
    model = tiny_classifier()
    optimizer = build_optim_wrapper(model, optim_cfg()).optimizer
    found = lr_and_wd_of_each_param(optimizer, model)
    assert set(found) == {n for n, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        lr, wd = found[name]
        expected_lr = BASE_LR * DECAY**(NUM_LAYERS + 1 - expected_layer_id(name))
        assert lr == pytest.approx(expected_lr, rel=1e-12), name
        no_decay = param.ndim == 1 or name.endswith(('cls_token', 'pos_embed'))
        assert wd == (0.0 if no_decay else BASE_WD), name
    # Spot checks that pin the table itself.
    assert found['head.layers.head.weight'][0] == pytest.approx(BASE_LR)
    assert found['backbone.ln1.weight'][0] == pytest.approx(BASE_LR)
    assert found['backbone.pos_embed'] == (pytest.approx(BASE_LR * DECAY**4), 0.0)
    assert found['backbone.layers.0.attn.qkv.weight'] == (pytest.approx(BASE_LR * DECAY**3),
                                                          BASE_WD)
    assert found['backbone.layers.2.attn.qkv.bias'] == (pytest.approx(BASE_LR * DECAY), 0.0)


def test_decay_ratio_survives_warmup_and_cosine():
    model = tiny_classifier()
    optimizer = build_optim_wrapper(model, optim_cfg()).optimizer
    initial = [g['lr'] for g in optimizer.param_groups]
    warmup = LinearLR(optimizer, start_factor=0.1, by_epoch=False, begin=0, end=3)
    cosine = CosineAnnealingLR(optimizer, eta_min_ratio=0.01, by_epoch=False, begin=3, end=10)
    factors = []
    for _ in range(8):
        optimizer.step()  # no gradients: a no-op that keeps the schedulers' call order
        for scheduler in (warmup, cosine):
            scheduler.step()
        factors.append(optimizer.param_groups[0]['lr'] / initial[0])
        for group, lr0 in zip(optimizer.param_groups, initial):
            assert group['lr'] == pytest.approx(lr0 * factors[-1], rel=1e-9)
    assert factors[0] < factors[2] == pytest.approx(1.0) and factors[-1] < 0.2


def test_frozen_params_are_left_out_and_logged_lr_is_the_heads():
    model = tiny_classifier(frozen_stages=NUM_LAYERS)
    optimizer = build_optim_wrapper(model, optim_cfg()).optimizer
    found = lr_and_wd_of_each_param(optimizer, model)
    assert set(found) == {'head.layers.head.weight', 'head.layers.head.bias'}
    assert optimizer.param_groups[0]['lr'] == pytest.approx(BASE_LR)


@pytest.mark.parametrize('paramwise, match', [
    (dict(layer_decay_rate=0.0), r'\(0, 1\]'),
    (dict(layer_decay_rate=1.5), r'\(0, 1\]'),
    (dict(layer_decay_rate=0.5, bias_decay_mult=0.0), 'no_decay_names'),
    (dict(), 'layer_decay_rate'),
])
def test_bad_paramwise_cfg_says_what_is_valid(paramwise, match):
    cfg = dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
               constructor='LearningRateDecayOptimWrapperConstructor', paramwise_cfg=paramwise)
    with pytest.raises(ValueError, match=match):
        build_optim_wrapper(tiny_classifier(), cfg)


def test_model_without_vit_backbone_is_refused():
    with pytest.raises(ValueError, match='backbone.num_layers'):
        build_optim_wrapper(torch.nn.Linear(2, 2), optim_cfg())
