"""The CLIP-architecture zero-shot towers (OpenAI, LAION, DFN, MetaCLIP) against open_clip
3.3.0.

Two kinds of checks:

- every zero-shot zoo entry, built on the meta device at full size, has the architecture
  open_clip builds for its "Converted From" model (widths, depths, heads, MLP widths, patch
  and input size, activation, parameter count) and the weights of the Hugging Face
  repository open_clip downloads for its tag;
- parity of the distinct new architectures, with random weights saved as open_clip's file:
  DFN ViT-H/14-378 (QuickGELU, 378 px, head width 80, squash resize) and MetaCLIP ViT-bigG/14
  (head width 104, MLP ratio 4.9231). Their full size (1-2.5 G parameters) would take
  minutes on this CPU, so both open_clip and mmclip build them at reduced width and depth
  (``REDUCED`` below: 2 layers per tower, two attention heads of the published head width,
  the published MLP ratio, input size, patch size and activation); every other setting is
  the zoo config's.
"""
import math
import zlib
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from mmengine.config import Config
from test_zeroshot import (
    CLASSES,
    PARITY_PHOTOS,
    TEMPLATES,
    open_clip_preprocess,
    open_clip_probs,
    open_clip_source,
    open_image,
    photos,
    save_state_dict,
)

import mmclip
from mmclip.apis import get_model_info, inference_model
from mmclip.checkpoint import load_checkpoint
from mmclip.checkpoint.convert_open_clip import convert_open_clip_state_dict
from mmclip.models.utils.transformer import QuickGELU
from mmclip.registry import MODELS

# The CLIP-architecture towers (SigLIP's: test_zeroshot_siglip.py).
ZOO = sorted(mmclip.list_models('clip_*zeroshot*'))
DFN_378 = 'clip_vit-huge-p14_dfn5b_zeroshot-cls_in1k-378px'
BIGG = 'clip_vit-bigg-p14_metaclip-fullcc_zeroshot-cls_in1k'
# open_clip model-config overrides (``create_model(name, **REDUCED[name])``) of the parity
# towers: what is reduced is the number of layers and of heads (so the width), and the joint
# embedding size; head width, MLP ratio, input and patch size stay the published ones.
TEXT = dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2)
REDUCED = {
    DFN_378: dict(embed_dim=64, text_cfg=TEXT, vision_cfg=dict(
        image_size=378, layers=2, width=2 * 80, head_width=80, patch_size=14)),
    BIGG: dict(embed_dim=64, text_cfg=TEXT, vision_cfg=dict(
        image_size=224, layers=2, width=2 * 104, head_width=104, mlp_ratio=4.9231,
        patch_size=14)),
}


def tower_sizes(cfg: dict, heads: int, mlp_ratio: float = 4.0) -> dict:
    """An open_clip tower config -> mmclip's ``arch`` dict (open_clip's MLP width is
    ``int(width * mlp_ratio)``)."""
    return dict(embed_dims=cfg['width'], num_layers=cfg['layers'], num_heads=heads,
                feedforward_channels=int(cfg['width'] * cfg.get('mlp_ratio', mlp_ratio)))


def mmclip_overrides(model_cfg: dict) -> dict:
    """``get_model`` overrides that give the tower sizes of an open_clip model config."""
    vision, text = model_cfg['vision_cfg'], model_cfg['text_cfg']
    dim = model_cfg['embed_dim']
    return dict(
        backbone=dict(arch=tower_sizes(vision, vision['width'] // vision['head_width'])),
        text_backbone=dict(arch=tower_sizes(text, text['heads']), out_channels=dim),
        head=dict(in_channels=vision['width'], out_channels=dim))


# ---- every zero-shot entry: open_clip's architecture and weights source -----------------------
@pytest.mark.parametrize('name', ZOO)
def test_zoo_entry_has_open_clips_architecture_and_weights(name):
    oc_name, tag = open_clip_source(name)
    info = get_model_info(name)
    hub = open_clip.get_pretrained_cfg(oc_name, tag)['hf_hub'].rstrip('/')
    assert info.sources == tuple(f'https://huggingface.co/{hub}/resolve/main/{file}' for file in
                                 ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin'))
    with torch.device('meta'):
        oc = open_clip.create_model(oc_name, device='meta')
        model = MODELS.build(Config.fromfile(info.config).model)
    assert (sum(p.numel() for p in model.parameters())
            == sum(p.numel() for p in oc.parameters())
            == info.metadata['Metadata']['Parameters'])
    visual, backbone = oc.visual, model.backbone
    assert (backbone.img_size, backbone.patch_size) == (visual.image_size[0],
                                                       visual.patch_size[0])
    for theirs, ours in ((visual.transformer, backbone), (oc.transformer, model.text_backbone)):
        assert len(ours.layers) == len(theirs.resblocks)
        block, layer = theirs.resblocks[0], ours.layers[0]
        assert layer.attn.num_heads == block.attn.num_heads
        assert layer.ffn.layers[0][0].out_features == block.mlp.c_fc.out_features
    quick_gelu = open_clip.get_model_config(oc_name).get('quick_gelu', False)
    assert quick_gelu == open_clip.get_pretrained_cfg(oc_name, tag).get('quick_gelu', quick_gelu)
    acts = [layer.ffn.layers[0][1] for tower in (backbone, model.text_backbone)
            for layer in tower.layers]
    assert all(isinstance(a, QuickGELU) == quick_gelu for a in acts)
    # The text tower's vocabulary, pooling and tokenizer are those of open_clip's config.
    text_cfg = open_clip.get_model_config(oc_name)['text_cfg']
    text = model.text_backbone
    assert text.token_embedding.num_embeddings == text_cfg['vocab_size']
    pool = {'argmax': 'eot', 'eos': 'eos'}[text_cfg.get('pool_type', 'argmax')]
    assert (text.pool_type, text.causal) == (pool, True)
    if pool == 'eos':
        assert text.eos_id == text_cfg['eos_id']
    tokenizer = Config.fromfile(info.config).model.get('tokenizer')
    if 'hf_tokenizer_name' in text_cfg:
        assert tokenizer == dict(type='HFTokenizer', name=text_cfg['hf_tokenizer_name'],
                                 context_length=text_cfg['context_length'],
                                 clean=text_cfg.get('tokenizer_kwargs', {}).get(
                                     'clean', 'whitespace'))
    else:
        assert tokenizer is None  # CLIP's BPE


def test_zoo_holds_dfn_378_as_its_best_published_tower():
    top1 = {name: get_model_info(name).metadata.get('Results', [{}])[0].get('Metrics', {})
            .get('Top 1 Accuracy') for name in mmclip.list_models('*zeroshot*')}
    assert max((v, k) for k, v in top1.items() if v is not None) == (84.37, DFN_378)


# ---- reduced-size parity of the distinct architectures -----------------------------------------
@pytest.mark.parametrize('name', [DFN_378, BIGG])
def test_reduced_tower_equals_open_clip(name, images_dir, tmp_path, torch_home):
    oc_name, _ = open_clip_source(name)
    torch.manual_seed(0)
    oc = open_clip.create_model(oc_name, **REDUCED[name]).eval()
    assert oc.visual.transformer.resblocks[0].attn.num_heads == 2
    path = save_state_dict(oc, tmp_path / 'open_clip_model.safetensors')
    # Strict key table: every open_clip key has a row and lands on a model key, and every
    # model key but the head built from prompts is filled.
    overrides = mmclip_overrides(open_clip.get_model_config(oc_name) | REDUCED[name])
    model = mmclip.get_model(name, pretrained=str(path), classes=CLASSES, templates=TEMPLATES,
                             **overrides)
    converted = convert_open_clip_state_dict(oc.state_dict())
    assert set(converted) == set(model.state_dict()) - set(model.derived_state_keys)
    size = REDUCED[name]['vision_cfg']['image_size']
    assert model.backbone.pos_embed.shape[1] == 1 + (size // 14)**2

    files = [f for f in photos(images_dir) if f.stem in PARITY_PHOTOS]
    preprocess = open_clip_preprocess(name)
    batch = torch.stack([preprocess(open_image(f)) for f in files])
    assert batch.shape[-2:] == (size, size)
    texts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(batch),
                                   oc.encode_image(batch, normalize=True), atol=1e-4, rtol=0)
        torch.testing.assert_close(model.encode_text(texts),
                                   oc.encode_text(open_clip.tokenize(texts), normalize=True),
                                   atol=1e-4, rtol=0)
        expected = open_clip_probs(oc, batch, CLASSES, TEMPLATES)
        torch.testing.assert_close(model(batch).softmax(dim=-1), expected, atol=1e-5, rtol=0)
    # End to end from the image files: mmclip's pipeline and preprocessor vs open_clip's.
    results = inference_model(model, [str(f) for f in files])
    scores = torch.from_numpy(np.stack([r['pred_scores'] for r in results]))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)


def test_reduced_sizes_keep_the_published_ratios():
    """What the parity towers keep of the full ones: head width, MLP width / width, input
    and patch size, activation."""
    for name, reduced in REDUCED.items():
        oc_name, _ = open_clip_source(name)
        full = open_clip.get_model_config(oc_name)['vision_cfg']
        small = reduced['vision_cfg']
        assert small['head_width'] == full['head_width']
        assert small.get('mlp_ratio', 4.0) == full.get('mlp_ratio', 4.0)
        assert (small['image_size'], small['patch_size']) == (full['image_size'],
                                                              full['patch_size'])
        assert math.isclose(int(small['width'] * small.get('mlp_ratio', 4.0)) / small['width'],
                            int(full['width'] * full.get('mlp_ratio', 4.0)) / full['width'],
                            rel_tol=1e-3)
        assert open_clip.get_model_config(oc_name)['quick_gelu']


def test_dfn_huge_configs_squash_as_open_clip_does():
    """DFN's ViT-H/14 weights are evaluated with both edges resized (open_clip's 'squash'),
    the others with a short-edge resize and a center crop."""
    for name in ZOO:
        oc_name, tag = open_clip_source(name)
        squash = open_clip.get_pretrained_cfg(oc_name, tag)['resize_mode'] == 'squash'
        pipeline = Config.fromfile(get_model_info(name).config).test_dataloader.dataset.pipeline
        modes = [t.get('crop_mode') for t in pipeline if t['type'] == 'CropPctResize']
        assert (modes == ['squash']) == squash, name
    assert Path(get_model_info(DFN_378).config).stem == DFN_378


class XLMStyleTokenizer:
    """MetaCLIP 2's id layout (XLM-V: start 0, end-of-text 2, padding 1), words hashed
    into [3, 1000): the same ids for open_clip and mmclip."""

    def __call__(self, texts) -> torch.Tensor:
        out = torch.ones(len(texts), 77, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [0] + [3 + zlib.crc32(w.encode()) % 997 for w in text.split()][:75] + [2]
            out[row, :len(ids)] = torch.tensor(ids)
        return out


def test_reduced_metaclip2_worldwide_equals_open_clip(images_dir, tmp_path, torch_home):
    """MetaCLIP 2's text tower pools at the first end-of-text id (2), not at the largest id;
    reduced as above, with a 1000-token vocabulary instead of XLM-V's 901,629."""
    name = 'clip_vit-huge-p14_metaclip2-worldwide_zeroshot-cls_in1k'
    oc_name, _ = open_clip_source(name)
    full = open_clip.get_model_config(oc_name)
    sizes = dict(embed_dim=64, text_cfg=dict(full['text_cfg'], **dict(TEXT, vocab_size=1000)),
                 vision_cfg=dict(full['vision_cfg'], layers=2, width=2 * 80))
    torch.manual_seed(0)
    oc = open_clip.create_model(oc_name, **sizes).eval()
    assert oc.text_pool_type == 'eos'
    path = save_state_dict(oc, tmp_path / 'open_clip_model.safetensors')
    overrides = mmclip_overrides(full | sizes)
    overrides['text_backbone']['vocab_size'] = 1000
    model = mmclip.get_model(name, classes=CLASSES, templates=TEMPLATES, **overrides)
    model.tokenizer = tokenizer = XLMStyleTokenizer()
    load_checkpoint(model, str(path))  # strict
    files = [f for f in photos(images_dir) if f.stem in PARITY_PHOTOS]
    preprocess = open_clip_preprocess(name)
    batch = torch.stack([preprocess(open_image(f)) for f in files])
    texts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(batch),
                                   oc.encode_image(batch, normalize=True), atol=1e-4, rtol=0)
        torch.testing.assert_close(model.encode_text(texts),
                                   oc.encode_text(tokenizer(texts), normalize=True),
                                   atol=1e-4, rtol=0)
        weights = open_clip.build_zero_shot_classifier(
            oc, tokenizer=tokenizer, classnames=CLASSES, templates=TEMPLATES, device='cpu')
        expected = (oc.logit_scale.exp() * oc.encode_image(batch, normalize=True)
                    @ weights).softmax(dim=-1)
        torch.testing.assert_close(model(batch).softmax(dim=-1), expected, atol=1e-5, rtol=0)
    results = inference_model(model, [str(f) for f in files])
    scores = torch.from_numpy(np.stack([r['pred_scores'] for r in results]))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)


class ImageEmbedding(torch.nn.Module):
    """mmclip's ``encode_image`` as a module, for mmengine's FLOP counter."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


def image_flops(module: torch.nn.Module, size: int) -> int:
    """mmengine's FLOP count (one multiply-add = one FLOP) for one image. Counted with grad
    enabled: under no_grad, torch's nn.MultiheadAttention (open_clip's CLIP towers) takes a
    fused path whose projections mmengine cannot see. Attention's own matmuls
    (scaled_dot_product_attention) are uncounted on both sides alike."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(module, (torch.randn(1, 3, size, size), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total()


@pytest.mark.parametrize('name', [DFN_378, BIGG])
def test_reduced_tower_flops_equal_open_clips(name):
    oc_name, _ = open_clip_source(name)
    oc = open_clip.create_model(oc_name, **REDUCED[name]).eval()
    model = mmclip.get_model(name, **mmclip_overrides(
        open_clip.get_model_config(oc_name) | REDUCED[name]))
    model.backbone.cls_token_pooling = False  # count the published architecture
    size = REDUCED[name]['vision_cfg']['image_size']
    flops = image_flops(ImageEmbedding(model), size)
    assert flops > 0 and flops == image_flops(oc.visual, size)
