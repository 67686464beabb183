"""``import mmclip`` changes nothing outside mmclip (each check in a fresh interpreter)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The first snapshot is taken right after ``import torch``, before anything imports
# torch.distributed. Importing mmengine's runner imports torch.distributed, whose DTensor
# modules allow-list their own classes (torch 2.14: DeviceMesh, DTensor, DTensorSpec,
# ShardOrderEntry, TensorMeta, Partial, Replicate, Shard, _StridedShard); mmclip, which
# imports that runner, may add nothing beyond them.
PROBE = r'''
import json, sys, torch
pristine = set(map(repr, torch.serialization.get_safe_globals()))
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import save_checkpoint

def state():
    return dict(schemes={k: f'{v.__module__}.{v.__qualname__}'
                         for k, v in CheckpointLoader._schemes.items()},
                safe_globals=sorted(map(repr, torch.serialization.get_safe_globals())))

def load(path):
    try:
        loaded = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except Exception as err:  # the outcome is compared, whichever it is
        return f'{type(err).__name__}: {err}'
    sd = loaded.get('state_dict', loaded)
    return {k: [list(v.shape), float(v.double().sum())] for k, v in sd.items()}

timm_file, mmengine_file = sys.argv[1:3]
before = dict(state(), timm=load(timm_file), mmengine=load(mmengine_file))
import mmclip, mmclip.checkpoint, mmclip.engine, mmclip.apis, mmclip.models  # noqa
mmclip.get_model('vit-base-p32_clip-openai-pre_3rdparty_in1k',
                 backbone=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                         feedforward_channels=32)),
                 head=dict(in_channels=32))
after = dict(state(), timm=load(timm_file), mmengine=load(mmengine_file))
mmengine_adds = sorted(set(before['safe_globals']) - pristine)
print(json.dumps(dict(before=before, after=after, mmengine_adds=mmengine_adds)))
'''


def test_import_mmclip_leaves_mmengine_loaders_and_torch_allow_list_alone(tmp_path):
    timm = pytest.importorskip('timm')
    import torch
    from mmengine.runner.checkpoint import save_checkpoint

    # A plain, non-CLIP timm state dict (its keys look like timm CLIP's, and mmclip must
    # not rename them for mmengine), and a checkpoint written by mmengine itself.
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False, depth=1)
    torch.save(vit.state_dict(), tmp_path / 'vit_tiny.pth')
    save_checkpoint({'state_dict': torch.nn.Linear(3, 2).state_dict(),
                     'meta': dict(epoch=3, note='plain')}, str(tmp_path / 'mmengine.pth'))

    result = subprocess.run(
        [sys.executable, '-c', PROBE, str(tmp_path / 'vit_tiny.pth'),
         str(tmp_path / 'mmengine.pth')],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=300, check=True)
    states = json.loads(result.stdout.strip().splitlines()[-1])
    before, after = states['before'], states['after']
    assert isinstance(before['timm'], dict) and 'patch_embed.proj.bias' in before['timm']
    assert isinstance(before['mmengine'], dict) and 'weight' in before['mmengine']
    assert before == after
    assert states['mmengine_adds'], 'mmengine no longer imports torch.distributed: simplify'
    assert all(name.startswith("<class 'torch.distributed.") for name in
               states['mmengine_adds']), states['mmengine_adds']


MMPRETRAIN_PROBE = r'''
import mmpretrain, mmclip
from mmpretrain.models import VisionTransformer as PretrainViT
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmclip.registry import MODELS as CLIP_MODELS
arch = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=32)
a = PRETRAIN_MODELS.build(dict(type='VisionTransformer', arch=arch, img_size=32, patch_size=16))
b = CLIP_MODELS.build(dict(type='VisionTransformer', arch=arch, img_size=32, patch_size=16))
assert type(a).__module__.startswith('mmpretrain') and type(b).__module__.startswith('mmclip')
print('ok')
'''


def test_mmpretrain_and_mmclip_build_their_own_vits_in_one_process():
    pytest.importorskip('mmpretrain', reason='mmpretrain is not installed')
    result = subprocess.run([sys.executable, '-c', MMPRETRAIN_PROBE],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr
