"""Robust fine-tuning of CLIP on tiny towers: the zero-shot-initialised classifier,
tools/wise_ft.py, the FLYP loss and the recipe configs.

The towers are open_clip ``CLIP`` models with random weights and a tiny architecture
(2 layers, width 32, 32 px images), saved as open_clip's files are; everything is compared
with open_clip's own outputs or with the zero-shot model, never with numbers written here.
"""
import importlib.util
from pathlib import Path

import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from mmclip.checkpoint import load_checkpoint
from mmclip.models.classifiers.zero_shot_init import zero_shot_init_state_dict
from mmclip.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ['cat', 'dog', 'rocket', 'horse']
TEMPLATES = ['a photo of a {}.', 'art of the {}.']
TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128)
EMBED = 16
QUICK_GELU = dict(type='QuickGELU')
VISION = dict(type='VisionTransformer', arch=TINY, img_size=32, patch_size=16, pre_norm=True,
              norm_cfg=dict(type='LN', eps=1e-5), act_cfg=QUICK_GELU, out_type='cls_token',
              final_norm=True)
TEXT = dict(type='CLIPTextTransformer', arch=TINY, out_channels=EMBED, act_cfg=QUICK_GELU)


def load_tool(path: str):
    """A tool script as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / 'tools' / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
