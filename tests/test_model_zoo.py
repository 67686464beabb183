"""The model zoo: list_models / get_model against the seed README, the metafile, the wheel."""
import copy
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from large_models import large_models
from mmengine.config import Config

import mmclip
from mmclip.apis import get_model_info, imagenet_categories, model_index_path
from mmclip.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / 'tests' / 'data' / 'reference'
TINY = dict(backbone=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                                    feedforward_channels=128)),
            head=dict(in_channels=64))


def seed_table() -> dict:
    """name -> (weights URL, top-1, top-5), from the seed README (the contract)."""
    rows = {}
    for line in (REFERENCE / 'seed-clip-README.md').read_text().splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 8 and cells[0].startswith('`vit-base'):
            url = re.search(r'\((https://\S+?\.pth)\)', cells[7]).group(1)
            rows[cells[0].split('`')[1]] = (url, float(cells[4]), float(cells[5]))
    return rows


def timm_sources() -> dict:
    """name -> timm model, from model-zoo-facts.md."""
    rows = {}
    for line in (REFERENCE / 'model-zoo-facts.md').read_text().splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 8 and cells[0].startswith('vit-base'):
            rows[cells[0]] = cells[1]
    return rows


SEED = seed_table()
LARGE = large_models()
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]


def test_seed_tables_parsed():
    assert len(SEED) == 14 and len(timm_sources()) == 14
    assert len(LARGE) == 10


ZERO_SHOT = [f'clip_vit-{arch}_{data}_zeroshot-cls_in1k'
             for arch in ('base-p32', 'base-p16', 'large-p14') for data in ('openai', 'laion2b')]
ZERO_SHOT += [f'clip_vit-{arch}_dfn2b_zeroshot-cls_in1k' for arch in ('base-p16', 'large-p14')]
ZERO_SHOT += ['clip_vit-huge-p14_dfn5b_zeroshot-cls_in1k',
              'clip_vit-huge-p14_dfn5b_zeroshot-cls_in1k-378px']
ZERO_SHOT += [f'clip_vit-{arch}_metaclip-fullcc_zeroshot-cls_in1k'
              for arch in ('base-p32', 'base-p16', 'large-p14', 'huge-p14', 'bigg-p14')]
ZERO_SHOT += ['clip_vit-huge-p14_metaclip2-worldwide_zeroshot-cls_in1k']
SIGLIP = ([f'siglip_vit-base-p16_webli_zeroshot-cls_in1k{s}'
           for s in ('', '-256px', '-384px', '-512px')]
          + [f'siglip_vit-large-p16_webli_zeroshot-cls_in1k-{s}px' for s in (256, 384)]
          + [f'siglip_vit-so400m-p14_webli_zeroshot-cls_in1k{s}' for s in ('', '-384px')]
          + [f'siglip2_vit-base-p16_webli_zeroshot-cls_in1k{s}'
             for s in ('', '-256px', '-384px', '-512px')]
          + [f'siglip2_vit-so400m-p14_webli_zeroshot-cls_in1k{s}' for s in ('', '-378px')]
          + [f'siglip2_vit-so400m-p16_webli_zeroshot-cls_in1k-{s}px' for s in (256, 384, 512)])
ZERO_SHOT += SIGLIP


def test_list_models_is_exactly_the_seed_large_and_zero_shot_names():
    assert mmclip.list_models('vit-*clip*') == sorted(SEED | LARGE.keys())
    assert mmclip.list_models() == sorted([*SEED, *LARGE, *ZERO_SHOT])
    assert mmclip.list_models('*zeroshot*') == sorted(ZERO_SHOT)
    assert mmclip.list_models('*p16*384px') == sorted(
        n for n in [*SEED, *SIGLIP] if 'p16' in n and n.endswith('384px'))
    assert mmclip.list_models('vit-large*') == sorted(n for n in LARGE if 'large' in n)
    assert len(mmclip.list_models('vit-huge*')) == 3
    assert mmclip.list_models('resnet*') == []


@pytest.mark.parametrize('name', sorted(SEED))
def test_metafile_entry_matches_the_contract(name):
    info = get_model_info(name)
    url, top1, top5 = SEED[name]
    timm_model = timm_sources()[name]
    assert info.weights == url
    assert info.sources == (url, f'https://huggingface.co/timm/{timm_model}/resolve/main/'
                                 f'model.safetensors')
    assert info.metadata['Converted From']['Model'] == timm_model
    metrics = info.metadata['Results'][0]['Metrics']
    assert (metrics['Top 1 Accuracy'], metrics['Top 5 Accuracy']) == (top1, top5)
    assert Path(info.config) == ROOT / 'configs' / 'clip' / f'{name}.py'


@pytest.mark.parametrize('name', sorted(LARGE))
def test_large_metafile_entry_has_the_hugging_face_source_and_timm_results(name):
    info = get_model_info(name)
    timm_model, top1, top5 = LARGE[name].timm_tag, LARGE[name].top1, LARGE[name].top5
    assert info.weights is None, 'no OpenMMLab release: the timm file is the only source'
    assert info.sources == (f'https://huggingface.co/timm/{timm_model}/resolve/main/'
                            f'model.safetensors', )
    assert info.metadata['Converted From']['Model'] == timm_model
    metrics = info.metadata['Results'][0]['Metrics']
    assert (metrics['Top 1 Accuracy'], metrics['Top 5 Accuracy']) == (top1, top5)
    assert Path(info.config) == ROOT / 'configs' / 'clip' / f'{name}.py'
    # Parameters of the real architecture (built on the meta device: no 2.5 GB of
    # weights), its position embedding counted on the 224 px grid.
    cfg = Config.fromfile(info.config)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    extra_tokens = model.backbone.pos_embed.shape[1] - (1 + (224 // 14) ** 2)
    params -= extra_tokens * model.backbone.embed_dims
    assert params == info.metadata['Metadata']['Parameters']
    assert round(params / 1e6, 2) == {'large': 304.20, 'huge': 632.05}[name.split('-')[1]]


@pytest.mark.parametrize('name', sorted(SEED | LARGE.keys()))
def test_every_name_builds_with_its_geometry(name):
    """Each name's config builds (tiny widths, so the builds stay fast) with the patch size
    and input size its name states, and its weights' normalisation in the data
    preprocessor (CLIP's, or 0.5 where timm says so)."""
    model = mmclip.get_model(name, **TINY)
    patch = int(re.search(r'-p(\d+)_', name).group(1))
    size = int(re.search(r'(\d+)px$', name).group(1)) if name.endswith('px') else 224
    assert (model.backbone.patch_size, model.backbone.img_size) == (patch, size)
    assert model.backbone.pos_embed.shape[1] == 1 + (size // patch) ** 2
    mean = [0.5] * 3 if name in LARGE and LARGE[name].half_normalised else CLIP_MEAN
    assert torch.allclose(model.data_preprocessor.mean.flatten(), torch.tensor(mean) * 255)
    assert model.dataset_meta['classes'] == imagenet_categories()
    assert not model.training


@pytest.mark.parametrize('name', ['vit-base-p32_clip-openai-pre_3rdparty_in1k',
                                  'vit-base-p16_clip-openai-pre_3rdparty_in1k-384px'])
def test_full_size_models_have_the_metafile_params(name):
    model = mmclip.get_model(name)
    backbone = model.backbone
    params = sum(p.numel() for p in model.parameters())
    extra_tokens = backbone.pos_embed.shape[1] - (1 + (224 // backbone.patch_size) ** 2)
    # The metafile counts a 224 px position embedding, as the seed table does.
    assert params - extra_tokens * 768 == get_model_info(name).metadata['Metadata']['Parameters']
    with torch.no_grad():
        assert model(torch.zeros(1, 3, backbone.img_size, backbone.img_size)).shape == (1, 1000)


def test_config_argument_is_not_mutated_and_overrides_apply():
    cfg = Config.fromfile(ROOT / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py')
    before = copy.deepcopy(cfg._cfg_dict.to_dict())
    model = mmclip.get_model(cfg, backbone=dict(img_size=64, **TINY['backbone']),
                             head=dict(in_channels=64, num_classes=10))
    assert cfg._cfg_dict.to_dict() == before
    assert model.head.layers.head.out_features == 10
    assert model.backbone.img_size == 64
    # The top-level data_preprocessor became the model's, as in mmengine's Runner.
    assert torch.allclose(model.data_preprocessor.std.flatten(),
                          torch.tensor(cfg.data_preprocessor.std))
    assert model.data_preprocessor.to_rgb
    assert model.dataset_meta['classes'] is None  # 10 classes: no ImageNet names


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="Did you mean.*vit-base-p32_clip-openai-pre_3rdparty"):
        mmclip.get_model('vit-base-p32_clip-openai_3rdparty_in1k')
    with pytest.raises(ValueError, match='pretrained=True needs a model-zoo name'):
        mmclip.get_model(str(ROOT / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py'),
                         pretrained=True)
    with pytest.raises(ValueError, match='pretrained must be'):
        mmclip.get_model('vit-base-p32_clip-openai-pre_3rdparty_in1k', pretrained=3)
    with pytest.raises(FileNotFoundError, match='missing.py'):
        mmclip.get_model('configs/missing.py')
    with pytest.raises(TypeError, match='zoo name'):
        mmclip.get_model(42)


def test_setup_py_version_leaves_the_tree_untouched(tmp_path):
    """Only building a distribution copies the model index into the package."""
    src = tmp_path / 'src'
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        '__pycache__', '.mim', '.git', '*.egg-info', 'work_dirs', 'tests', 'docs', 'demo'))
    before = sorted(p.relative_to(src) for p in src.rglob('*'))
    out = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=src, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[-1] == mmclip.__version__
    assert sorted(p.relative_to(src) for p in src.rglob('*')) == before
    assert not (src / 'mmclip' / '.mim').exists()


def test_model_index_is_found_from_an_installed_wheel(tmp_path):
    """Build the wheel from a copy of the sources, install it into a folder and list the
    models from there, away from the checkout."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md', 'model-index.yml'):
        shutil.copy(ROOT / name, src / name)
    for folder in ('mmclip', 'configs'):
        shutil.copytree(ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    pip = [sys.executable, '-m', 'pip', '-q', '--disable-pip-version-check']
    subprocess.run(pip + ['wheel', str(src), '-w', str(tmp_path / 'dist'), '--no-deps',
                          '--no-build-isolation'], check=True, capture_output=True)
    wheel, = (tmp_path / 'dist').glob('mmclip-*.whl')
    subprocess.run(pip + ['install', '--no-deps', '--target', str(tmp_path / 'site'),
                          str(wheel)], check=True, capture_output=True)
    probe = ('import mmclip, os; from mmclip.apis import get_model_info, model_index_path; '
             'names = mmclip.list_models("*clip*"); '
             'print(mmclip.__file__, model_index_path(), len(names), '
             'all(os.path.isfile(get_model_info(n).config) for n in names))')
    out = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, 'PYTHONPATH': str(tmp_path / 'site')}
                         ).stdout.split()
    site = tmp_path / 'site' / 'mmclip'
    assert out == [str(site / '__init__.py'), str(site / '.mim' / 'model-index.yml'),
                   str(len(mmclip.list_models('*clip*'))), 'True']
    assert model_index_path() == ROOT / 'model-index.yml'  # the checkout reads its own


def test_pretrained_true_converts_the_timm_file_of_a_large_model(tmp_path, torch_home):
    """The only source of a ViT-L/14 name is timm's Hugging Face file: served here from a
    local mirror folder (tiny widths: the key layout and conversion are what is checked),
    it is fetched, converted and loaded strictly; the logits equal timm's."""
    timm = pytest.importorskip('timm')
    from safetensors.torch import save_file
    name = 'vit-large-p14_clip-openai-pre_3rdparty_in1k'
    arch = TINY['backbone']['arch']
    reference = timm.create_model(
        LARGE[name].timm_tag.split('.')[0], pretrained=False, embed_dim=arch['embed_dims'],
        depth=arch['num_layers'], num_heads=arch['num_heads'],
        mlp_ratio=arch['feedforward_channels'] / arch['embed_dims']).eval()
    served = tmp_path / 'hf' / 'timm' / LARGE[name].timm_tag / 'resolve' / 'main'
    served.mkdir(parents=True)
    save_file(reference.state_dict(), served / 'model.safetensors')

    model = mmclip.get_model(name, pretrained=True,
                             mirrors={'https://huggingface.co': str(tmp_path / 'hf')}, **TINY)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=0)


def test_a_zoo_name_without_pretrained_says_its_weights_are_random():
    """Once, by name; a config file or ``pretrained=...`` is what the user asked for."""
    from mmengine.logging import MMLogger
    name = 'vit-base-p32_clip-openai-pre_3rdparty_in1k'
    records: list = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        mmclip.get_model(name, **TINY)
        mmclip.get_model(get_model_info(name).config, **TINY)
    finally:
        logger.removeHandler(handler)
    said = [r.getMessage() for r in records if 'random weights' in r.getMessage()]
    assert said == [f'{name}: random weights (pretrained=False); pass pretrained=True for the '
                    'published ones, or a checkpoint path.']
