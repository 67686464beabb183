"""Checkpoints the loader copies into a model are memory-mapped (zip-format torch files;
safetensors always are), so a 2.5 GB ViT-H/14 file is not a second copy in process memory.
Files torch cannot map are read as before."""
import gc
from pathlib import Path

import pytest
import torch
from torch import nn

from mmclip.checkpoint import load_checkpoint, read_checkpoint_file

MAPS = Path('/proc/self/maps')
pytestmark = pytest.mark.skipif(not MAPS.exists(), reason='needs /proc/self/maps (Linux)')


def mapped(path: Path) -> bool:
    return str(path) in MAPS.read_text()


def state() -> dict:
    return {'weight': torch.randn(64, 32), 'bias': torch.randn(64)}


def test_zip_file_is_mapped_only_when_asked(tmp_path):
    expected = state()
    path = tmp_path / 'w.pth'
    torch.save(expected, path)
    loaded = read_checkpoint_file(str(path), mmap=True)
    assert mapped(path)
    torch.testing.assert_close(loaded, expected, rtol=0, atol=0)
    del loaded
    gc.collect()
    assert not mapped(path)
    torch.testing.assert_close(read_checkpoint_file(str(path)), expected, rtol=0, atol=0)
    assert not mapped(path)


@pytest.mark.parametrize('name,zipped', [('legacy.pth', False), ('torch.safetensors', True)])
def test_files_torch_cannot_map_are_read_as_before(tmp_path, name, zipped):
    """A legacy (non-zip) file, and a torch file named *.safetensors (torch would read
    that path as safetensors): read through a file object, unmapped."""
    expected = state()
    path = tmp_path / name
    torch.save(expected, path, _use_new_zipfile_serialization=zipped)
    loaded = read_checkpoint_file(str(path), mmap=True)
    assert not mapped(path)
    torch.testing.assert_close(loaded, expected, rtol=0, atol=0)


def test_load_checkpoint_copies_from_the_mapped_file(tmp_path):
    model = nn.Linear(32, 64)
    expected = state()
    path = tmp_path / 'w.pth'
    torch.save(expected, path)
    load_checkpoint(model, str(path), logger='silent')
    gc.collect()
    assert not mapped(path), 'the mapping ends with the load; the model holds a copy'
    torch.testing.assert_close(dict(model.state_dict()), expected, rtol=0, atol=0)
