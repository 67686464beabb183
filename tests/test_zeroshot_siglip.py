"""SigLIP and SigLIP 2 zero-shot towers against open_clip 3.3.0 (its timm image towers).

- Every SigLIP zoo entry, built on the meta device at full size, has the architecture open
  _clip builds for its "Converted From" model, the tokenizer its model config names, and the
  weights of the Hugging Face repository open_clip downloads.
- Parity with random weights saved as open_clip's file, for SigLIP ViT-B/16, SigLIP
  ViT-SO400M/14-384 and SigLIP 2 ViT-B/16. At full size they take minutes on this CPU, so
  both sides build them reduced (``reduced`` below): 2 layers per tower, 2 attention heads
  of the published head width, the published MLP ratios, input and patch size, and a
  1000-token vocabulary; the text context length, activations, norms, MAP head and scoring
  are the published ones. open_clip's image tower is timm's model, so the reduction goes
  through ``timm.create_model``'s keyword arguments (depth, embed_dim, num_heads).
- The prompts are tokenized by a word-hash tokenizer written here, the same ids for both
  sides (the Hugging Face tokenizers are tested in test_zeroshot_tokenizers.py).
"""
import importlib.util
import math
import zlib

import numpy as np
import open_clip
import pytest
import timm
import torch
from mmengine.config import Config
from test_zeroshot import (
    CLASSES,
    PARITY_PHOTOS,
    TEMPLATES,
    open_clip_preprocess,
    open_clip_source,
    open_image,
    photos,
    save_state_dict,
)
from test_zeroshot_towers import ImageEmbedding, image_flops

import mmclip
from mmclip.apis import get_model_info, inference_model
from mmclip.checkpoint import load_checkpoint
from mmclip.checkpoint.convert_open_clip import convert_open_clip_state_dict
from mmclip.registry import MODELS

SIGLIP = sorted(mmclip.list_models('siglip*'))
PARITY = ['siglip_vit-base-p16_webli_zeroshot-cls_in1k',
          'siglip_vit-so400m-p14_webli_zeroshot-cls_in1k-384px',
          'siglip2_vit-base-p16_webli_zeroshot-cls_in1k',
          'siglip2_vit-so400m-p16_webli_zeroshot-cls_in1k-256px']
VOCAB = 1000
HEADS = 2


class WordHashTokenizer:
    """Words -> ids in [3, VOCAB), then end-of-text 1, zero-padded to the context length
    (cut keeping end-of-text), like SigLIP's tokenizer's layout."""

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length

    def __call__(self, texts) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [3 + zlib.crc32(w.encode()) % (VOCAB - 3) for w in text.split()]
            ids = ids[:self.context_length - 1] + [1]
            out[row, :len(ids)] = torch.tensor(ids)
        return out


def full_open_clip(name: str):
    oc_name, _ = open_clip_source(name)
    with torch.device('meta'):
        return open_clip.create_model(oc_name, device='meta')


def reduced(name: str) -> dict:
    """The reduced sizes: width = HEADS x the published head width; MLP ratios kept."""
    full = full_open_clip(name)
    trunk = full.visual.trunk
    v_head = trunk.embed_dim // trunk.blocks[0].attn.num_heads
    text_cfg = open_clip.get_model_config(open_clip_source(name)[0])['text_cfg']
    t_head = text_cfg['width'] // text_cfg['heads']
    assert v_head == t_head  # so both towers reduce to one width (no projection in between)
    width = HEADS * v_head
    return dict(width=width, depth=2,
                vision_mlp=trunk.blocks[0].mlp.fc1.out_features / trunk.embed_dim,
                text_cfg=dict(text_cfg, width=width, heads=HEADS, layers=2, vocab_size=VOCAB))


def arch(width: int, mlp_ratio: float) -> dict:
    return dict(embed_dims=width, num_layers=2, num_heads=HEADS,
                feedforward_channels=int(width * mlp_ratio))


def reduced_model(name: str, sizes: dict, **prompts):
    """The zoo entry ``name`` at the ``reduced`` sizes (random weights)."""
    width = sizes['width']
    return mmclip.get_model(
        name, **prompts, backbone=dict(arch=arch(width, sizes['vision_mlp'])),
        text_backbone=dict(arch=arch(width, sizes['text_cfg'].get('mlp_ratio', 4.0)),
                           out_channels=width, vocab_size=VOCAB),
        head=dict(in_channels=width, out_channels=width))


def reduced_pair(name: str, reduced_timm):
    """open_clip's reduced tower (random, seed 0) and mmclip's, loaded from its file
    strictly, with the word-hash tokenizer on both sides."""
    sizes = reduced(name)
    reduced_timm.update(width=sizes['width'], depth=sizes['depth'])
    torch.manual_seed(0)
    oc = open_clip.create_model(open_clip_source(name)[0], embed_dim=sizes['width'],
                                text_cfg=sizes['text_cfg']).eval()
    assert len(oc.visual.trunk.blocks) == 2 and oc.visual.trunk.embed_dim == sizes['width']
    model = reduced_model(name, sizes, classes=CLASSES, templates=TEMPLATES)
    model.tokenizer = WordHashTokenizer(sizes['text_cfg']['context_length'])
    return oc, model, sizes


@pytest.fixture
def reduced_timm(monkeypatch):
    """timm.create_model with the depth / width set into the returned dict, and HEADS heads
    (open_clip's TimmModel passes no size arguments of its own)."""
    sizes = {}
    create = timm.create_model

    def create_reduced(model_name, **kwargs):
        if not sizes:  # not set yet: the full-size model
            return create(model_name, **kwargs)
        return create(model_name, depth=sizes['depth'], embed_dim=sizes['width'],
                      num_heads=HEADS, **kwargs)

    monkeypatch.setattr(timm, 'create_model', create_reduced)
    return sizes


# ---- every SigLIP entry: open_clip's architecture, tokenizer and weights -------------------
@pytest.mark.parametrize('name', SIGLIP)
def test_siglip_entry_has_open_clips_architecture_tokenizer_and_weights(name):
    oc_name, tag = open_clip_source(name)
    info = get_model_info(name)
    hub = open_clip.get_pretrained_cfg(oc_name, tag)['hf_hub'].rstrip('/')
    assert info.sources == tuple(f'https://huggingface.co/{hub}/resolve/main/{file}' for file in
                                 ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin'))
    cfg = Config.fromfile(info.config)
    oc = full_open_clip(name)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert (sum(p.numel() for p in model.parameters())
            == sum(p.numel() for p in oc.parameters())
            == info.metadata['Metadata']['Parameters'])
    trunk, backbone = oc.visual.trunk, model.backbone
    assert (backbone.img_size, backbone.patch_size) == (trunk.patch_embed.img_size[0],
                                                       trunk.patch_embed.patch_size[0])
    assert len(backbone.layers) == len(trunk.blocks)
    assert backbone.layers[0].attn.num_heads == trunk.blocks[0].attn.num_heads
    assert backbone.attn_pool.num_heads == trunk.attn_pool.num_heads
    assert (backbone.attn_pool.ffn.layers[0][0].out_features
            == trunk.attn_pool.mlp.fc1.out_features)
    text_cfg = open_clip.get_model_config(oc_name)['text_cfg']
    text = model.text_backbone
    assert (len(text.layers), text.layers[0].attn.num_heads, text.context_length,
            text.token_embedding.num_embeddings) == (text_cfg['layers'], text_cfg['heads'],
                                                     text_cfg['context_length'],
                                                     text_cfg['vocab_size'])
    approximate = text_cfg.get('act_kwargs', {}).get('approximate', 'none')
    assert text.layers[0].ffn.layers[0][1].approximate == approximate
    # The image tower's activation is timm's (GELUTanh for the SO400M/16 models).
    act = trunk.blocks[0].mlp.act
    timm_approximate = 'tanh' if type(act).__name__ == 'GELUTanh' else act.approximate
    for ours in (backbone.layers[0].ffn.layers[0][1], backbone.attn_pool.ffn.layers[0][1]):
        assert ours.approximate == timm_approximate
    assert backbone.layers[0].ln1.eps == trunk.blocks[0].norm1.eps
    # The tokenizer open_clip's model config names, with its context length and cleaning.
    assert cfg.model.tokenizer == dict(type='HFTokenizer', name=text_cfg['hf_tokenizer_name'],
                                       context_length=text_cfg['context_length'],
                                       clean=text_cfg['tokenizer_kwargs']['clean'])
    assert model.head.logit_bias is not None and model.head.proj is None


def test_siglip_zoo_families():
    assert len(mmclip.list_models('siglip_*')) == 8
    assert len(mmclip.list_models('siglip2_*')) == 9
    assert len(mmclip.list_models('*zeroshot*')) >= 20


# ---- reduced-size parity ---------------------------------------------------------------------
@pytest.mark.parametrize('name', PARITY)
def test_reduced_siglip_equals_open_clip(name, reduced_timm, images_dir, tmp_path, torch_home):
    oc, model, sizes = reduced_pair(name, reduced_timm)
    tokenizer = model.tokenizer
    files = [f for f in photos(images_dir) if f.stem in PARITY_PHOTOS]
    preprocess = open_clip_preprocess(name)
    batch = torch.stack([preprocess(open_image(f)) for f in files])
    with torch.no_grad():
        weights = open_clip.build_zero_shot_classifier(
            oc, tokenizer=tokenizer, classnames=CLASSES, templates=TEMPLATES, device='cpu')
        cosine = oc.encode_image(batch, normalize=True) @ weights
        # A scale and bias (trained SigLIP: about 117 and -13) that spread the sigmoid
        # scores of these random towers around 0.5, where a wrong value would show.
        oc.logit_scale.fill_(math.log(100.0))
        oc.logit_bias.fill_(-100.0 * float(cosine.median()))
    path = save_state_dict(oc, tmp_path / 'open_clip_model.safetensors')
    load_checkpoint(model, str(path))  # strict
    converted = convert_open_clip_state_dict(oc.state_dict())
    assert set(converted) == set(model.state_dict()) - set(model.derived_state_keys)

    texts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(batch),
                                   oc.encode_image(batch, normalize=True), atol=1e-4, rtol=0)
        torch.testing.assert_close(model.encode_text(texts),
                                   oc.encode_text(tokenizer(texts), normalize=True),
                                   atol=1e-4, rtol=0)
        logits = oc.logit_scale.exp() * cosine + oc.logit_bias
        expected = torch.sigmoid(logits)
        assert expected.min() < 0.5 < expected.max()
        torch.testing.assert_close(model(batch), logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.sigmoid(model(batch)), expected, atol=1e-5, rtol=0)
    # End to end from the files: mmclip's pipeline, preprocessor and sigmoid scores.
    results = inference_model(model, [str(f) for f in files])
    scores = torch.from_numpy(np.stack([r['pred_scores'] for r in results]))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    assert [r['pred_class'] for r in results] == [CLASSES[i] for i in expected.argmax(dim=1)]


def test_siglip_text_tower_reads_every_position(reduced_timm):
    """Bidirectional attention: unlike CLIP's, the embedding depends on the padding after
    end-of-text, so nothing may be cut."""
    model = reduced_model(PARITY[0], reduced(PARITY[0]))
    tokens = WordHashTokenizer(64)(['a photo of a cat'])
    noisy = tokens.clone()
    noisy[0, 10:20] = 7
    with torch.no_grad():
        assert (model.text_backbone(tokens) - model.text_backbone(noisy)).abs().max() > 1e-4


@pytest.mark.parametrize('name', PARITY)
def test_reduced_siglip_flops_equal_open_clips(name, reduced_timm):
    sizes = reduced(name)
    reduced_timm.update(width=sizes['width'], depth=sizes['depth'])
    oc_name, _ = open_clip_source(name)
    oc = open_clip.create_model(oc_name, embed_dim=sizes['width'],
                                text_cfg=sizes['text_cfg']).eval()
    model = reduced_model(name, sizes)
    size = model.backbone.img_size
    flops = image_flops(ImageEmbedding(model), size)
    assert flops > 0 and flops == image_flops(oc.visual, size)


def test_reduced_siglip_image_tower_exports_to_onnx(reduced_timm, images_dir, tmp_path,
                                                    torch_home):
    """The exported graph (attention pool included) gives the model's logits (1e-4), and
    ONNX Runtime and OpenVINO score them as SigLIP's head does: each class's sigmoid."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    from mmclip.deployment import export_onnx
    from mmclip.deployment.onnx_export import verify_onnx
    model = reduced_model(PARITY[0], reduced(PARITY[0]), classes=CLASSES, templates=TEMPLATES)
    model.tokenizer = WordHashTokenizer(64)
    model.build_head()
    onnx_file = export_onnx(model, tmp_path / 'siglip.onnx')
    files = [f for f in photos(images_dir) if f.stem in PARITY_PHOTOS][:3]
    assert verify_onnx(model, onnx_file, files, threads=1) <= 1e-4

    from mmengine.dataset import pseudo_collate

    from mmclip.apis.inference import class_scores
    from mmclip.datasets.transforms import build_test_pipeline
    from mmclip.deployment import EXPORTED_BACKENDS, build_exported_classifier
    batch = pseudo_collate([build_test_pipeline(model.cfg)[0](dict(img_path=str(f)))
                            for f in files])
    with torch.no_grad():
        logits = model(model.data_preprocessor(batch, False)['inputs'])
    expected = torch.sigmoid(logits.float())
    assert torch.equal(class_scores(model, logits), expected)
    for backend in EXPORTED_BACKENDS:
        try:
            EXPORTED_BACKENDS[backend].require()
        except ImportError:
            continue  # an optional runtime that is not installed
        exported = build_exported_classifier(backend, model.cfg, onnx_file, threads=1)
        assert exported.score_function == 'sigmoid'
        inputs = exported.data_preprocessor(batch, False)['inputs']
        got = class_scores(exported, exported(inputs))
        assert (got - expected).abs().max() <= 1e-4, backend
        predicted = exported(inputs, [None] * len(files), mode='predict')
        assert torch.allclose(torch.stack([p.pred_score for p in predicted]), got)


# ---- the evaluation suite ------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec('clip_benchmark') is None,
                    reason='clip-benchmark is not installed (pip install -e ".[evaluation]")')
@pytest.mark.filterwarnings('ignore:y_pred contains classes not in y_true')
def test_siglip_tower_in_the_suite_equals_clip_benchmark(reduced_timm, tmp_path, torch_home,
                                                         monkeypatch):
    """A SigLIP tower's zero-shot classification (MNIST's layout, its class names and
    templates) and retrieval (Flickr30k's) numbers equal clip_benchmark's on open_clip's
    tower: the sigmoid and its bias change no ranking."""
    from clip_benchmark.datasets.builder import build_dataset, image_captions_collate_fn
    from clip_benchmark.datasets.flickr import Flickr
    from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
    from suite_layouts import make_zeroshot_sets
    from test_eval_suite import _flickr_root, _numpy2_safe

    from mmclip.evaluation import suite as S
    name = PARITY[0]
    oc, model, _ = reduced_pair(name, reduced_timm)
    load_checkpoint(model, str(save_state_dict(oc, tmp_path / 'open_clip_model.safetensors')))
    preprocess = open_clip_preprocess(name)
    pipeline = model.cfg.test_dataloader.dataset.pipeline
    make_zeroshot_sets(tmp_path / 'data')
    _numpy2_safe(zeroshot_classification, monkeypatch)
    theirs = build_dataset('mnist', root=str(tmp_path / 'data' / 'mnist'), transform=preprocess,
                           split='test', download=False)
    expected = zeroshot_classification.evaluate(
        oc, torch.utils.data.DataLoader(theirs, batch_size=4), model.tokenizer, theirs.classes,
        theirs.templates, 'cpu', amp=False)
    spec = S.SUITE_DATASETS['mnist']
    ours = S.build_dataset(spec, str(tmp_path / 'data' / 'mnist'), pipeline)
    got = S.evaluate(model, spec, ours, batch_size=4)
    assert list(got) == list(expected)
    for key in got:
        assert got[key] == expected[key] or (np.isnan(got[key]) and np.isnan(expected[key]))

    spec = S.SUITE_DATASETS['flickr30k']
    root = _flickr_root(tmp_path / 'flickr30k')  # 12 images: every recall@k defined
    ours = S.build_dataset(spec, str(root), pipeline)
    theirs = Flickr(str(root), str(root / 'flickr30k_test_karpathy.txt'), transform=preprocess)
    expected = zeroshot_retrieval.evaluate(
        oc, torch.utils.data.DataLoader(theirs, batch_size=2,
                                        collate_fn=image_captions_collate_fn),
        model.tokenizer, 'cpu', amp=False, recall_k_list=[1, 5, 10])
    got = S.evaluate(model, spec, ours, batch_size=2)
    assert got == expected
    assert 0 < got['image_retrieval_recall@1'] < got['image_retrieval_recall@10'] < 1
