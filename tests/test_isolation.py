"""The test run's isolation (tests/conftest.py): caches and the work dir are the test's own."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch

import mmclip
from mmclip.apis import get_model_info

TINY_VISION = dict(embed_dims=64, num_layers=1, num_heads=2, feedforward_channels=128)


def test_caches_and_work_dir_are_the_tests_own(tmp_path, isolated_environment,
                                               real_cache_changes):
    """A zero-shot model built from a local published-name file writes its verified record
    and its head into the test's TORCH_HOME, which a subprocess sees too; the real caches
    are as they were when the test began."""
    torch_home = isolated_environment['TORCH_HOME']
    assert Path.cwd() == isolated_environment['HOME'].parent / 'cwd'
    config = tmp_path / 'tiny_zeroshot.py'
    config.write_text(
        f"_base_ = {get_model_info('clip_vit-base-p32_openai_zeroshot-cls_in1k').config!r}\n"
        f"model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_VISION!r}),\n"
        f"                           img_size=32, patch_size=16),\n"
        f"             head=dict(in_channels=64))\n")
    model = mmclip.get_model(str(config))
    data = tmp_path / 'tiny.pth'
    torch.save(model.state_dict(), data)
    # The published naming (<name>-<sha256[:8]>.pth) makes the loader record the hash.
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:8]
    published = data.rename(tmp_path / f'tiny-{digest}.pth')

    mmclip.get_model(str(config), pretrained=str(published), classes=['cat', 'dog'],
                     templates=['a photo of a {}.'])

    state = torch_home / 'hub' / 'mmclip'
    assert len(list((state / 'verified').glob('*.json'))) == 1
    assert len(list((state / 'zeroshot_heads').glob('*.safetensors'))) == 1
    probe = 'import torch.hub; print(torch.hub.get_dir())'
    out = subprocess.run([sys.executable, '-c', probe], check=True, capture_output=True,
                         text=True, env=dict(os.environ)).stdout
    assert out.strip() == str(torch_home / 'hub')
    assert real_cache_changes() == []
