"""Crafted checkpoints, built here as an attacker would, through every entry point.

Each file is small and each reaches for something else: code execution (``--resume``'s
config string, a numpy object array, a class torch's allow-list admits), a local file
read, or unbounded work (a view claiming 2^40 elements, nesting with shared children,
stride-0 training records, a bytearray constructor, a deflated zip entry). Each must be
refused in one line naming the file, in under 5 s and 300 MB of extra memory (a
subprocess under ``RLIMIT_AS``), with no marker written and no crash.
"""
import io
import json
import os
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_safe_loading import Reduce

from mmclip.checkpoint import UnsafeCheckpointError, read_checkpoint_file
from mmclip.checkpoint.safe_load import PLAIN_HISTORY_BUFFER

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                                    feedforward_channels=128)), head=dict(in_channels=64))
SEED_CONFIG = str(ROOT / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py')
EXTRA_MEMORY = 300 << 20
SECONDS = 5.0


# ---- the files ---------------------------------------------------------------------------
def _expanded_view():
    """1.7 KB on disk: one float whose view claims 2^40 elements."""
    return {'backbone.cls_token': torch.zeros(1).expand(2 ** 20, 2 ** 20)}


def _shared_nesting():
    """Dicts that share their children, 60 deep: 2^60 paths through a few hundred bytes."""
    node: dict = {'leaf': 1}
    for _ in range(60):
        node = {'a': node, 'b': node}
    return {'state_dict': node}


def _stride0_record():
    """A 'plain' HistoryBuffer record whose tensors are stride-0 views of one number."""
    view = torch.zeros(1, dtype=torch.float64).expand(2 ** 28)
    return {'message_hub': {'log_scalars': {'loss': {
        PLAIN_HISTORY_BUFFER: True, 'log_history': view, 'count_history': view,
        'max_length': 2 ** 28}}}}


def _bytearray_bomb():
    return {'meta': Reduce(bytearray, 2 ** 31)}


def _numpy_object_array():
    """numpy's array class called directly with an object dtype over file bytes: its
    items would be raw pointers chosen by the file."""
    pointers = (0x4141414141414141).to_bytes(8, 'little') * 4
    return {'meta': {'classes': Reduce(np.ndarray, (4, ), np.dtype('O'), pointers)}}


def _file_reading_class(target: Path):
    """traceback.FrameSummary reads a line of ``target`` when built, and torch's own
    allow-list admits it (torch allow-lists it at import)."""
    return {'meta': {'classes': [Reduce(traceback.FrameSummary, str(target), 1, 'x')]}}


CRAFTED = {
    'expanded_view': (_expanded_view, 'backbone.cls_token is a'),
    'shared_nesting': (_shared_nesting, 'nests deeper than'),
    'stride0_record': (_stride0_record, '_history is a'),
    'bytearray_bomb': (_bytearray_bomb, 'bytearray, which is not plain weights'),
    'numpy_object_array': (_numpy_object_array, 'meta.classes holds'),
}


def _deflate(path: Path) -> Path:
    """The same checkpoint with its entries deflated (zip bombs inflate ~1000x)."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info), zipfile.ZIP_DEFLATED)
    return path


def write_crafted(name: str, folder: Path) -> Path:
    path = folder / f'{name}.pth'
    if name == 'deflated':
        torch.save({'backbone.cls_token': torch.zeros(2 ** 20)}, path)
        return _deflate(path)
    if name == 'file_reading_class':
        torch.save(_file_reading_class(folder / 'secret.txt'), path)
        return path
    torch.save(CRAFTED[name][0](), path)
    return path


# ---- a subprocess under a memory limit ---------------------------------------------------
HARNESS = r'''
import json, re, resource, sys, time
from mmclip import get_model
from mmclip.checkpoint import load_checkpoint
entry, path, config, tiny = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
model = get_model(config, **tiny)
vm = int(re.search(r'VmSize:\s+(\d+)', open('/proc/self/status').read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[5]), resource.RLIM_INFINITY))
start = time.monotonic()
try:
    if entry == 'get_model':
        get_model(config, pretrained=path, **tiny)
    else:
        load_checkpoint(model, path)
    outcome = 'LOADED'
except MemoryError:
    outcome = 'MEMORY'
except Exception as err:
    outcome = f'{type(err).__name__}: {err}'
print(json.dumps(dict(seconds=time.monotonic() - start, outcome=outcome)))
'''


def run_limited(entry: str, path: Path, cwd: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MALLOC_ARENA_MAX='2', OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, '-c', HARNESS, entry, str(path), SEED_CONFIG, json.dumps(TINY),
         str(EXTRA_MEMORY)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]  # a crash is a negative code
    return json.loads(result.stdout.strip().splitlines()[-1])


# get_model and load_checkpoint share one read path: every file through the first, two
# through the second.
@pytest.mark.parametrize('entry,name', [
    *(('get_model', name) for name in sorted(CRAFTED) + ['deflated', 'file_reading_class']),
    ('load_checkpoint', 'expanded_view'), ('load_checkpoint', 'numpy_object_array')])
def test_crafted_file_is_refused_quickly_in_bounded_memory(name, entry, tmp_path):
    (tmp_path / 'secret.txt').write_text('API_KEY=hunter2\n')
    path = write_crafted(name, tmp_path)
    assert path.stat().st_size < 64 << 10 or name == 'deflated'
    result = run_limited(entry, path, tmp_path)
    outcome = result['outcome']
    assert outcome.startswith(('UnsafeCheckpointError', 'CheckpointReadError')), outcome
    assert str(path) in outcome and '\n' not in outcome and 'hunter2' not in outcome
    if name in CRAFTED:
        assert CRAFTED[name][1] in outcome
    assert result['seconds'] < SECONDS


def test_deflated_entries_are_refused_by_name(tmp_path):
    path = write_crafted('deflated', tmp_path)
    with pytest.raises(Exception, match='is compressed; torch.save stores'):
        read_checkpoint_file(str(path))


def test_classes_torch_admits_are_refused_whatever_the_process_allowed(tmp_path):
    """torch's allow-list admits FrameSummary (it reads a file line when built) and, once
    torch.distributed is imported, DTensor's classes; mmclip's list admits neither."""
    import torch.distributed.tensor  # noqa: F401  (extends torch's allow-list)
    allowed = set(torch.serialization.get_safe_globals())
    assert traceback.FrameSummary in allowed
    path = write_crafted('file_reading_class', tmp_path)
    with pytest.raises(UnsafeCheckpointError, match='it references traceback.FrameSummary'):
        read_checkpoint_file(str(path))
    dtensor_names = [g for g in allowed if getattr(g, '__module__', '').startswith(
        'torch.distributed.tensor')]
    assert dtensor_names
    torch.save({'w': Reduce(dtensor_names[0], )}, tmp_path / 'dtensor.pth')
    with pytest.raises(UnsafeCheckpointError, match='it references torch.distributed'):
        read_checkpoint_file(str(tmp_path / 'dtensor.pth'))


def test_loading_touches_no_allow_list(tmp_path, monkeypatch):
    """Nothing process-wide, nothing racy: a load that tried to extend torch's allow-list
    (for itself or anyone) would fail here."""
    def forbidden(*args, **kwargs):
        raise AssertionError('mmclip touched torch.serialization\'s allow-list')

    for name in ('add_safe_globals', 'safe_globals', 'clear_safe_globals'):
        monkeypatch.setattr(torch.serialization, name, forbidden)
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'epoch': 1}}, tmp_path / 'ok.pth')
    assert torch.equal(read_checkpoint_file(str(tmp_path / 'ok.pth'))['state_dict']['w'],
                       torch.ones(2))


def test_wide_shared_nesting_within_bounds_loads_in_linear_time(tmp_path):
    """1000 references to the same child on each of 12 levels: 10^36 paths, 12 nodes."""
    node: list = [0]
    for _ in range(12):
        node = [node] * 1000
    torch.save({'meta': {'x': node}}, tmp_path / 'wide.pth')
    assert read_checkpoint_file(str(tmp_path / 'wide.pth'))['meta']['x'][0][0] is not None


# ---- the tools ---------------------------------------------------------------------------
def _tool(args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess, path: Path) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1 and 'Traceback' not in output, output[-3000:]
    errors = [line for line in output.splitlines() if str(path) in line]
    assert len(errors) == 1 and 'ERROR' in errors[0], output[-3000:]
    return errors[0]


@pytest.mark.parametrize('tool', ['test', 'predict', 'converter'])
def test_tools_refuse_an_expanded_view_in_one_line(tool, tiny_config, images_dir, tmp_path):
    path = write_crafted('expanded_view', tmp_path)
    args = {
        'test': [str(ROOT / 'tools/test.py'), str(tiny_config()), str(path),
                 '--work-dir', str(tmp_path / 'work')],
        'predict': [str(ROOT / 'tools/predict.py'), str(images_dir), '--model',
                    str(tiny_config()), '--checkpoint', str(path), '--out',
                    str(tmp_path / 'out.jsonl'), '--num-workers', '0'],
        'converter': [str(ROOT / 'tools/model_converters/timm_to_mmclip.py'), str(path),
                      str(tmp_path / 'converted.pth')],
    }[tool]
    assert 'is a (1048576, 1048576) tensor' in _one_error_line(_tool(args, tmp_path), path)
    assert not (tmp_path / 'converted.pth').exists()


def test_resume_never_executes_the_config_string_of_a_checkpoint(tmp_path):
    """A checkpoint of tensors, dicts and strings only passes weights_only; mmengine's
    Runner.resume hands meta['config'] to Config.fromstring, which executes it."""
    from test_checkpoint_loader import _runner

    from mmclip.engine import MMClipRunner
    first = _runner(tmp_path / 'a', max_iters=2, runner_class=MMClipRunner)
    first.train()
    saved = tmp_path / 'a' / 'iter_2.pth'
    checkpoint = read_checkpoint_file(str(saved))
    marker = tmp_path / 'pwned.txt'
    checkpoint['meta']['config'] = (f'import os\nos.system("touch {marker}")\n'
                                    f'gpu_ids = [0, 1]\n')
    torch.save(checkpoint, tmp_path / 'evil.pth')
    resumed = _runner(tmp_path / 'b', max_iters=2, runner_class=MMClipRunner,
                      load_from=str(tmp_path / 'evil.pth'), resume=True)
    resumed.train()
    assert resumed.iter == 2 and not marker.exists()
