"""The Hugging Face tokenizers of the SigLIP towers: where their files are read from, the
ids open_clip gives, and the one-line errors.

A tiny sentencepiece-style (Unigram, metaspace) tokenizer is made in the test with the
``tokenizers`` package and saved as a Hugging Face tokenizer folder; nothing is downloaded.
The id tests need the ``siglip`` extra (transformers); the error tests do not.
"""
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mmclip
from mmclip.apis import get_model_info
from mmclip.models.utils import tokenizer as tokenizer_module
from mmclip.models.utils.tokenizer import (
    HFTokenizer,
    TokenizerError,
    build_tokenizer,
    tokenizer_cache_dir,
)

NAME = 'test-org/tiny-siglip-tokenizer'
PIECES = ['▁a', '▁photo', '▁of', '▁the', '▁cat', '▁dog', '▁caf', 'é', '▁東京', '🐱', '▁',
          'a', 'b', 'c', 'd', 'e', 'o', 't', 's', 'r', 'n', 'i', 'g', 'h', 'p']
TEXTS = ['A photo of the cat!', 'a PHOTO of a Dog.', 'café 東京 🐱 and 🚀', '', '   the\tcat  ',
         'fish &amp; chips, "quoted" (and) punctuation?!',
         ' '.join(['a photo of the dog'] * 20)]  # longer than every context length


def write_tiny_tokenizer(folder: Path) -> Path:
    """A Unigram (sentencepiece-style) tokenizer with SigLIP's special-token layout: pad 0,
    end-of-text 1 appended, unknown 2."""
    tokenizers = pytest.importorskip('tokenizers')
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors
    vocab = [('<pad>', 0.0), ('</s>', 0.0), ('<unk>', 0.0)]
    vocab += [(piece, -1.0 - 0.1 * i) for i, piece in enumerate(PIECES)]
    tok = tokenizers.Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement='▁', prepend_scheme='always')
    tok.post_processor = processors.TemplateProcessing(single='$A </s>',
                                                       special_tokens=[('</s>', 1)])
    tok.decoder = decoders.Metaspace()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / 'tokenizer.json'))
    (folder / 'tokenizer_config.json').write_text(json.dumps(dict(
        tokenizer_class='PreTrainedTokenizerFast', pad_token='<pad>', eos_token='</s>',
        unk_token='<unk>', model_max_length=10**6)))
    return folder


@pytest.fixture
def tiny_dir(tmp_path):
    pytest.importorskip('transformers')
    return write_tiny_tokenizer(tmp_path / 'tiny')


@pytest.mark.parametrize('context_length,clean', [(64, 'canonicalize'), (16, 'canonicalize'),
                                                  (8, 'whitespace')])
def test_ids_equal_open_clips(tiny_dir, context_length, clean):
    from open_clip.tokenizer import HFTokenizer as OpenClipHFTokenizer
    theirs = OpenClipHFTokenizer(str(tiny_dir), context_length=context_length, clean=clean)
    ours = build_tokenizer(dict(type='HFTokenizer', name=NAME, context_length=context_length,
                                clean=clean, path=str(tiny_dir)))
    ids = ours(TEXTS)
    assert ids.dtype == torch.int64 and ids.shape == (len(TEXTS), context_length)
    assert torch.equal(ids, theirs(TEXTS))
    assert ids[-1, -1] == 1 and (ids[0] == 1).sum() == 1  # cut keeping end-of-text
    assert (ids == 2).any()  # the rocket is unknown: mixed input reaches every path
    with pytest.raises(TypeError, match='list of texts'):
        ours('a single string')


def test_files_are_found_through_the_mirror_and_the_cache(tmp_path, torch_home, monkeypatch):
    pytest.importorskip('transformers')
    expected = build_tokenizer(dict(type='HFTokenizer', name=NAME, context_length=16,
                                    path=str(write_tiny_tokenizer(tmp_path / 'src'))))(TEXTS)
    # MMCLIP_MIRRORS maps the Hugging Face URL of the repository to a local folder.
    mirror = tmp_path / 'hf-mirror'
    shutil.copytree(tmp_path / 'src', mirror / NAME / 'resolve' / 'main')
    monkeypatch.setenv('MMCLIP_MIRRORS', f'https://huggingface.co={mirror}')
    assert torch.equal(HFTokenizer(NAME, context_length=16)(TEXTS), expected)
    # mmclip's tokenizer cache under the torch hub dir.
    monkeypatch.delenv('MMCLIP_MIRRORS')
    cache = Path(tokenizer_cache_dir(NAME))
    assert cache.parent == torch_home / 'hub' / 'mmclip' / 'tokenizers'
    shutil.copytree(tmp_path / 'src', cache)
    assert torch.equal(HFTokenizer(NAME, context_length=16)(TEXTS), expected)


def test_missing_files_are_one_line_naming_where_to_put_them(torch_home, tmp_path):
    pytest.importorskip('transformers')
    with pytest.raises(TokenizerError) as err:
        HFTokenizer(NAME, context_length=16)(['a cat'])
    message = str(err.value)
    assert '\n' not in message
    assert tokenizer_cache_dir(NAME) in message and NAME in message
    (tmp_path / 'empty').mkdir()
    with pytest.raises(TokenizerError, match=re.escape(f'{tmp_path / "empty"} holds none of')):
        HFTokenizer(NAME, context_length=16, path=str(tmp_path / 'empty'))(['a cat'])


def test_missing_transformers_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'transformers', None)  # import transformers fails
    with pytest.raises(TokenizerError) as err:
        HFTokenizer(NAME, context_length=16, path=str(tmp_path))(['a cat'])
    assert '\n' not in str(err.value)
    assert 'pip install "mmclip[siglip]"' in str(err.value)


def test_bad_tokenizer_configs_are_one_line():
    for cfg, match in ((dict(type='SentencePiece'), 'tokenizer type must be one of'),
                       (dict(type='HFTokenizer', name=NAME), 'context_length')):
        with pytest.raises(TokenizerError, match=match):
            build_tokenizer(cfg)


def test_models_build_without_reading_tokenizer_files(torch_home):
    """The files are read when prompts are first tokenized, so a SigLIP model builds (and
    tools that never tokenize run) without them; CLIP's towers keep their BPE."""
    name = 'siglip_vit-base-p16_webli_zeroshot-cls_in1k'
    cfg = Config.fromfile(get_model_info(name).config)
    assert cfg.model.tokenizer.name == 'timm/ViT-B-16-SigLIP'
    small = dict(embed_dims=64, num_layers=1, num_heads=1, feedforward_channels=64)
    model = mmclip.get_model(name, backbone=dict(arch=small),
                             text_backbone=dict(arch=small, out_channels=64),
                             head=dict(in_channels=64, out_channels=64))
    assert isinstance(model.tokenizer, HFTokenizer) and model.tokenizer._tokenizer is None
    clip = mmclip.get_model('clip_vit-base-p32_openai_zeroshot-cls_in1k',
                            backbone=dict(arch=small), text_backbone=dict(arch=small),
                            head=dict(in_channels=64))
    assert isinstance(clip.tokenizer, tokenizer_module.CLIPTokenizer)


def test_tools_test_runs_a_siglip_tower_with_its_hf_tokenizer(tiny_dir, images_dir, tmp_path):
    """tools/test.py on a (small, random) SigLIP config whose checkpoint has no head: the
    head is built through the Hugging Face tokenizer, and top-1 / top-5 are those of the
    model's own sigmoid scores in this process."""
    import os
    import subprocess

    import numpy as np

    from mmclip import inference_model
    root = Path(__file__).resolve().parents[1]
    classes, templates = ['cat', 'dog', 'the photo', 'a cafe', 'tree'], ['a photo of the {}.']
    small = dict(_delete_=True, embed_dims=64, num_layers=1, num_heads=1,
                 feedforward_channels=128)
    config = tmp_path / 'siglip_small.py'
    base = get_model_info('siglip_vit-base-p16_webli_zeroshot-cls_in1k').config
    config.write_text(
        f'_base_ = {base!r}\n'
        f'model = dict(backbone=dict(arch={small!r}),\n'
        f'             text_backbone=dict(arch={small!r}, out_channels=64, vocab_size=64),\n'
        f'             head=dict(in_channels=64, out_channels=64, classes={classes!r},\n'
        f'                       templates={templates!r}),\n'
        f'             tokenizer=dict(path={str(tiny_dir)!r}))\n')
    torch.manual_seed(0)
    model = mmclip.get_model(str(config))
    with torch.no_grad():
        model.head.logit_scale.fill_(4.0)
    state = {k: v for k, v in model.state_dict().items()
             if k not in model.derived_state_keys}
    checkpoint = tmp_path / 'siglip_small.pth'
    torch.save(state, checkpoint)

    photos = sorted(p for p in images_dir.iterdir() if p.suffix in ('.png', '.jpg'))
    results = inference_model(model, [str(p) for p in photos])
    scores = np.stack([r['pred_scores'] for r in results])
    assert ((scores > 0) & (scores < 1)).all()  # sigmoid scores, not a softmax
    order = np.argsort(-scores, axis=1)
    labels = [int(order[i, [0, 1, -1][i % 3]]) for i in range(len(photos))]
    top1 = np.mean([order[i, 0] == label for i, label in enumerate(labels)]) * 100
    data = tmp_path / 'imagenet'
    (data / 'val').mkdir(parents=True)
    (data / 'meta').mkdir()
    lines = []
    for i, (src, label) in enumerate(zip(photos, labels)):
        dst = data / 'val' / f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        dst.write_bytes(src.read_bytes())
        lines.append(f'{dst.name} {label}\n')
    (data / 'meta' / 'val.txt').write_text(''.join(lines))
    env = dict(os.environ, OMP_NUM_THREADS='1', TORCH_HOME=str(tmp_path / 'torch_home'))
    env['PYTHONPATH'] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [sys.executable, str(root / 'tools' / 'test.py'), str(config), str(checkpoint),
           '--work-dir', str(tmp_path / 'work'), '--cfg-options',
           f'test_dataloader.dataset.data_root={data}', 'test_dataloader.batch_size=4',
           'test_dataloader.num_workers=0']
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    match = re.search(r'\|\s*accuracy/top1\s*\|\s*([\d.]+)\s*\|', output)
    assert match, output[-3000:]
    assert float(match.group(1)) == pytest.approx(top1, abs=0.01)
    assert 'Building the zero-shot head: 5 classes x 1 templates' in output
