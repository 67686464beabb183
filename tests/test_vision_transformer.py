"""Tiny-size unit tests of the ViT backbone, head and classifier."""
import pytest
import torch
from torch import nn

from mmclip.models import ImageClassifier, VisionTransformer
from mmclip.models.utils import resize_pos_embed
from mmclip.structures import DataSample

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)


def tiny_vit(**kwargs) -> VisionTransformer:
    kwargs.setdefault('arch', TINY)
    kwargs.setdefault('img_size', 64)
    kwargs.setdefault('patch_size', 16)
    kwargs.setdefault('pre_norm', True)
    model = VisionTransformer(**kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('out_type,shape', [
    ('cls_token', (2, 32)),
    ('featmap', (2, 32, 4, 4)),
    ('avg_featmap', (2, 32)),
    ('raw', (2, 17, 32)),
])
def test_out_types(out_type, shape):
    model = tiny_vit(out_type=out_type)
    x = torch.rand(2, 3, 64, 64)
    (out, ) = model(x)
    assert out.shape == shape
    raw = tiny_vit(out_type='raw')
    raw.load_state_dict(model.state_dict())
    (tokens, ) = raw(x)
    expected = {
        'cls_token': tokens[:, 0],
        'featmap': tokens[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2),
        'avg_featmap': tokens[:, 1:].mean(1),
        'raw': tokens,
    }[out_type]
    torch.testing.assert_close(out, expected)


def test_out_indices_return_intermediate_layers():
    model = tiny_vit(out_indices=(0, -1), out_type='raw', final_norm=False)
    x = torch.rand(1, 3, 64, 64)
    first, last = model(x)
    # Recompute by hand: embeddings, then layer by layer.
    tokens, _ = model.patch_embed(x)
    tokens = torch.cat([model.cls_token, tokens], 1) + model.pos_embed
    tokens = model.pre_norm(tokens)
    after = []
    for layer in model.layers:
        tokens = layer(tokens)
        after.append(tokens)
    torch.testing.assert_close(first, after[0])
    torch.testing.assert_close(last, after[-1])


def test_final_norm_is_applied_to_last_output_only():
    model = tiny_vit(out_indices=(1, 2), out_type='raw')
    x = torch.rand(1, 3, 64, 64)
    mid, last = model(x)
    ref = tiny_vit(out_indices=(1, 2), out_type='raw', final_norm=False)
    ref.load_state_dict(model.state_dict(), strict=False)
    mid_ref, last_ref = ref(x)
    torch.testing.assert_close(mid, mid_ref)
    torch.testing.assert_close(last, model.ln1(last_ref))


def test_frozen_stages_freeze_params_and_keep_eval_mode():
    model = tiny_vit(frozen_stages=2, drop_rate=0.1)
    model.train()
    frozen = [model.patch_embed, model.pre_norm, model.layers[0], model.layers[1]]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    assert not model.pos_embed.requires_grad and not model.cls_token.requires_grad
    assert model.layers[2].training and model.ln1.training
    assert all(p.requires_grad for p in model.layers[2].parameters())
    # Frozen parameters get no gradient.
    model(torch.rand(2, 3, 64, 64))[0].sum().backward()
    assert model.layers[0].attn.qkv.weight.grad is None
    assert model.layers[2].attn.qkv.weight.grad is not None


def test_frozen_all_stages_freezes_final_norm():
    model = tiny_vit(frozen_stages=3)
    model.train()
    assert not model.ln1.training and not model.ln1.weight.requires_grad


def test_pos_embed_interpolation_equals_preresized_model():
    model = tiny_vit(img_size=64, patch_size=16)
    x = torch.rand(1, 3, 96, 96)
    (out, ) = model(x)
    big = tiny_vit(img_size=96, patch_size=16)
    state = model.state_dict()
    state['pos_embed'] = resize_pos_embed(state['pos_embed'], (4, 4), (6, 6))
    big.load_state_dict(state)
    (ref, ) = big(x)
    torch.testing.assert_close(out, ref)
    assert out.shape == (1, 32)


def test_resize_pos_embed_matches_timm():
    timm_pos = pytest.importorskip('timm.layers').resample_abs_pos_embed
    pos = torch.randn(1, 1 + 7 * 7, 8)
    ours = resize_pos_embed(pos, (7, 7), (12, 12))
    torch.testing.assert_close(ours, timm_pos(pos, (12, 12), (7, 7), num_prefix_tokens=1))


def test_patch_embed_bias_follows_pre_norm():
    assert tiny_vit(pre_norm=True).patch_embed.projection.bias is None
    assert tiny_vit(pre_norm=False).patch_embed.projection.bias is not None
    assert isinstance(tiny_vit(pre_norm=False).pre_norm, nn.Identity)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='small'),
     "Unknown arch 'small'; choose one of "
     "\\['b', 'base', 'bigg', 'h', 'huge', 'l', 'large', 'so400m'\\]"),
    (dict(arch=dict(embed_dims=8)), 'custom arch must be a dict with exactly the keys'),
    (dict(out_type='pool'), "out_type must be one of"),
    (dict(out_indices=5), 'out_indices entry 5 is out of range'),
    (dict(norm_cfg=dict(type='BN')), "norm_cfg type must be 'LN'"),
    (dict(with_cls_token=False), "out_type='cls_token' needs with_cls_token=True"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_vit(**kwargs)


def test_arch_preset_and_eps():
    model = VisionTransformer(arch='b', patch_size=32, pre_norm=True)
    assert model.embed_dims == 768 and len(model.layers) == 12
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 + 2 * 12 and all(m.eps == 1e-5 for m in norms)


def test_custom_arch_dict_is_not_mutated():
    arch = dict(TINY)
    tiny_vit(arch=arch)
    assert arch == TINY


def tiny_classifier(**head) -> ImageClassifier:
    return ImageClassifier(
        backbone=dict(type='VisionTransformer', arch=TINY, img_size=64, patch_size=16,
                      pre_norm=True),
        head=dict(type='VisionTransformerClsHead', num_classes=5, in_channels=32, **head),
        data_preprocessor=dict(mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], to_rgb=True))


def test_classifier_modes():
    model = tiny_classifier().eval()
    x = torch.rand(2, 3, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, model.head.layers.head(model.extract_feat(x)[-1]))
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]
    loss = model(x, samples, mode='loss')['loss']
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, torch.tensor([1, 3])))
    preds = model(x, samples, mode='predict')
    for pred, row in zip(preds, logits):
        torch.testing.assert_close(pred.pred_score, row.softmax(0))
        assert pred.pred_label.item() == row.argmax().item()
    with pytest.raises(ValueError, match="mode must be one of 'tensor', 'loss', 'predict'"):
        model(x, mode='logits')


def test_head_with_hidden_dim_uses_tanh_pre_logits():
    model = tiny_classifier(hidden_dim=16).eval()
    x = torch.rand(1, 3, 64, 64)
    feat = model.extract_feat(x)[-1]
    expected = model.head.layers.head(torch.tanh(model.head.layers.pre_logits(feat)))
    torch.testing.assert_close(model(x), expected)
    assert set(model.head.state_dict()) == {
        'layers.pre_logits.weight', 'layers.pre_logits.bias', 'layers.head.weight',
        'layers.head.bias'
    }


def test_data_preprocessor_flips_and_normalises():
    model = tiny_classifier()
    imgs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    out = model.data_preprocessor(dict(inputs=imgs, data_samples=None))
    expected = (torch.stack(imgs).flip(1).float() - torch.tensor([1., 2., 3.]).view(1, 3, 1, 1)) / 2
    torch.testing.assert_close(out['inputs'], expected)
    with pytest.raises(ValueError, match='one shape'):
        model.data_preprocessor(dict(inputs=[imgs[0], imgs[0][:, :32]]))


def test_label_smoothing_and_soft_targets():
    from mmclip.models import CrossEntropyLoss
    logits, target = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    smooth = CrossEntropyLoss(label_smooth_val=0.1)
    torch.testing.assert_close(smooth(logits, target),
                               nn.functional.cross_entropy(logits, target, label_smoothing=0.1))
    one_hot = nn.functional.one_hot(target, 5).float()
    torch.testing.assert_close(smooth(logits, one_hot), smooth(logits, target))
    with pytest.raises(ValueError, match=r'label_smooth_val must be in \[0, 1\)'):
        CrossEntropyLoss(label_smooth_val=1.0)


def test_class_token_pooling_equals_full_last_layer_and_is_eval_only(monkeypatch):
    model = tiny_vit(qkv_bias=True)
    x = torch.rand(3, 3, 64, 64)
    calls = []
    last = model.layers[-1]
    original = last.forward_first_token
    monkeypatch.setattr(last, 'forward_first_token', lambda t: calls.append(1) or original(t))
    with torch.no_grad():
        (pooled, ) = model(x)
        assert calls == [1]
        model.cls_token_pooling = False
        (full, ) = model(x)
        assert calls == [1]
    assert (pooled - full).abs().max() <= 1e-5
    # Training, other outputs and other layers run every token through the last layer.
    model.cls_token_pooling = True
    model.train()
    model(x)
    for kwargs in (dict(out_type='raw'), dict(out_type='featmap'), dict(out_indices=(0, 2))):
        other = tiny_vit(**kwargs)
        other_last = other.layers[-1]
        monkeypatch.setattr(other_last, 'forward_first_token', lambda t: calls.append(2))
        other(x)
    assert calls == [1]


def test_pooled_eval_output_equals_full_training_mode_output():
    model = tiny_vit()
    x = torch.rand(2, 3, 64, 64)
    model.train()
    (train_out, ) = model(x)
    model.eval()
    (eval_out, ) = model(x)
    torch.testing.assert_close(train_out, eval_out, atol=1e-5, rtol=0)
