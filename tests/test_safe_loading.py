"""Checkpoints built the way an attacker would build them: nothing in them ever runs.

Each payload, if executed, writes a marker file. Every entry point that reads a checkpoint
(``read_checkpoint_file``, ``get_model``, ``tools/test.py``, ``tools/train.py --resume``)
must refuse it with one line naming the file, and the marker must never appear.
"""
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MMLogger
from torch._tensor import _rebuild_from_type_v2

from mmclip import get_model
from mmclip.checkpoint import CheckpointFormatError, UnsafeCheckpointError, read_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                                    feedforward_channels=128)), head=dict(in_channels=64))
SEED_CONFIG = str(ROOT / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py')


class Reduce:
    """Pickles as ``func(*args)``: how any call is smuggled into a pickle."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def Build(cls, state):
    """An instance that pickles as ``cls`` (NEWOBJ) with BUILD ``state``: how a pickled
    object carries its state, here any state (see ``save``)."""
    obj = cls.__new__(cls)
    obj.__dict__['_crafted_state'] = state
    return obj


def _write_marker_command(marker: Path) -> str:
    return f'open({str(marker)!r}, "w").write("pwned")'


def payloads(marker: Path) -> dict:
    """name -> object to pickle. Each reaches for code execution a different way."""
    code = _write_marker_command(marker)
    to_exec = Reduce(getattr, HistoryBuffer, '__init__')  # HistoryBuffer.__init__
    builtins = Reduce(getattr, Reduce(getattr, to_exec, '__globals__'), 'get')
    return {
        'reduce_os_system': Reduce(os.system, f'touch {marker}'),
        'reduce_exec': Reduce(exec, code),
        'reduce_eval_in_meta': {'state_dict': {}, 'meta': Reduce(eval, code)},
        # The mechanism of issue 9: poison HistoryBuffer's class-level statistics table so
        # that a getattr wrapper trusting it hands out object.__getattribute__, then make
        # torch's allow-listed _rebuild_from_type_v2 call it, up to builtins' exec.
        'history_buffer_poisoning': {
            'message_hub': Build(HistoryBuffer, {
                'max_length': 10, '_log_history': np.zeros(1), '_count_history': np.ones(1),
                'statistics_methods': {
                    '__class__': Reduce(getattr, HistoryBuffer, '__class__'),
                    '__getattribute__': Reduce(getattr, HistoryBuffer, '__getattribute__')}}),
            'payload': Reduce(_rebuild_from_type_v2,
                              Reduce(getattr, HistoryBuffer, '__getattribute__'),
                              HistoryBuffer, (HistoryBuffer, '__init__'), {})},
        'getattr_chain_to_builtins': Reduce(_rebuild_from_type_v2, builtins, dict,
                                            ('exec', ), {}),
        'statistics_method_called': Reduce(_rebuild_from_type_v2,
                                           Reduce(getattr, HistoryBuffer, 'mean'),
                                           HistoryBuffer, (), {}),
        'numpy_object_array': np.array([Reduce(exec, code)], dtype=object),
    }


def save(obj, path: Path, legacy: bool) -> Path:
    """torch.save (pickle protocol 2, as every checkpoint), each ``Build`` object pickled
    with its crafted state."""
    original = HistoryBuffer.__getstate__
    HistoryBuffer.__getstate__ = lambda self: self.__dict__.get('_crafted_state') or original(self)
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    finally:
        HistoryBuffer.__getstate__ = original
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / 'pwned.txt'


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('name', sorted(payloads(Path('x'))))
def test_crafted_checkpoint_is_refused_and_never_runs(name, legacy, marker, tmp_path):
    statistics_before = dict(HistoryBuffer._statistics_methods)
    path = save(payloads(marker)[name], tmp_path / f'{name}.pth', legacy)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint_file(str(path))
    message = str(info.value)
    assert str(path) in message and '\n' not in message
    assert not marker.exists()
    # The class-level table mmengine's own buffers use is untouched.
    assert HistoryBuffer._statistics_methods == statistics_before
    assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 2.0


@contextlib.contextmanager
def logged_records() -> Iterator[List[logging.LogRecord]]:
    """What mmengine's current logger emits meanwhile (its console handler may belong to
    another test's captured stream)."""
    records: List[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_foreign_statistics_are_dropped_never_built(tmp_path):
    """A real-looking mmengine training checkpoint whose buffer state carries a poisoned
    table entry: the buffer is never built (dropped with one warning naming it), the
    weights load, the class-level table is untouched."""
    state = {'max_length': 10, '_log_history': np.array([1.0, 3.0]),
             '_count_history': np.array([1, 1]),
             'statistics_methods': {'mean': Reduce(getattr, HistoryBuffer, 'max')}}
    weights = {'w': torch.arange(4.0)}
    path = save({'state_dict': weights, 'message_hub': {
        'log_scalars': {'loss': Build(HistoryBuffer, state)}, 'runtime_info': {'iter': 7}}},
        tmp_path / 'poison.pth', legacy=False)
    before = dict(HistoryBuffer._statistics_methods)
    with logged_records() as records:
        loaded = read_checkpoint_file(str(path))
    assert loaded['message_hub'] == {'log_scalars': {}, 'runtime_info': {'iter': 7}}
    assert torch.equal(loaded['state_dict']['w'], weights['w'])
    warning = [r.getMessage() for r in records if 'dropped' in r.getMessage()]
    assert len(warning) == 1 and warning[0].startswith(f'{path}: dropped 1 logging')
    assert 'message_hub.log_scalars.loss' in warning[0]
    assert HistoryBuffer._statistics_methods == before
    assert HistoryBuffer([1.0, 5.0], [1, 1]).statistics('mean') == 3.0


def test_numpy_outside_the_message_hub_is_refused_and_the_allow_list_untouched(tmp_path):
    """numpy values are admitted nowhere but as mmengine's logging statistics, whatever
    the process allowed itself; and a load changes nothing in torch's allow-list."""
    original = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([np.ndarray])
    try:
        before = set(torch.serialization.get_safe_globals())
        path = save({'x': np.float64(1.5), 'y': np.arange(2.0)}, tmp_path / 'np.pth',
                    legacy=False)
        with pytest.raises(UnsafeCheckpointError, match=r'np\.pth: [xy] holds'):
            read_checkpoint_file(str(path))
        assert set(torch.serialization.get_safe_globals()) == before
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(original)


def _tiny_state():
    return get_model(SEED_CONFIG, **TINY).state_dict()


def test_get_model_refuses_a_crafted_checkpoint(marker, tmp_path):
    evil = {'state_dict': _tiny_state(), 'meta': Reduce(os.system, f'touch {marker}')}
    path = save(evil, tmp_path / 'evil.pth', legacy=False)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        get_model(SEED_CONFIG, pretrained=str(path), **TINY)
    assert not marker.exists()


@pytest.mark.parametrize('corrupt,match', [
    (lambda s: s.update({'backbone.ln1.weight': s['backbone.ln1.weight'].long()}),
     'backbone.ln1.weight is torch.int64'),
    (lambda s: s['head.layers.head.bias'].__setitem__(3, float('nan')),
     'head.layers.head.bias holds NaN or Inf'),
    (lambda s: s['backbone.cls_token'].view(-1).__setitem__(0, float('inf')),
     'backbone.cls_token holds NaN or Inf'),
])
def test_broken_weights_are_refused_with_file_and_key(corrupt, match, tmp_path):
    state = _tiny_state()
    corrupt(state)
    path = tmp_path / 'broken.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointFormatError, match=match) as info:
        get_model(SEED_CONFIG, pretrained=str(path), **TINY)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('values', [
    [float('inf'), float('-inf')],  # their sum is NaN
    [60000.0, 60000.0, float('nan')],  # in fp16 the finite part alone overflows
])
def test_every_nonfinite_mix_is_refused(values, tmp_path):
    state = _tiny_state()
    bias = state['head.layers.head.bias']
    bias[:len(values)] = torch.tensor(values)
    state['head.layers.head.bias'] = bias.half()
    torch.save(state, tmp_path / 'mix.pth')
    with pytest.raises(CheckpointFormatError, match='head.layers.head.bias holds NaN or Inf'):
        get_model(SEED_CONFIG, pretrained=str(tmp_path / 'mix.pth'), **TINY)


def test_finite_weights_whose_sum_overflows_load(tmp_path):
    state = _tiny_state()
    state['head.layers.head.bias'] = torch.full_like(state['head.layers.head.bias'],
                                                     60000.0).half()
    assert not torch.isfinite(state['head.layers.head.bias'].sum())
    torch.save(state, tmp_path / 'large.pth')
    model = get_model(SEED_CONFIG, pretrained=str(tmp_path / 'large.pth'), **TINY)
    assert bool((model.head.layers.head.bias == 60000.0).all())


def test_nonfinite_weights_load_when_the_user_opts_in(tmp_path):
    from mmclip.checkpoint import load_checkpoint
    state = _tiny_state()
    state['head.layers.head.bias'][0] = float('nan')
    torch.save(state, tmp_path / 'nan.pth')
    model = get_model(SEED_CONFIG, **TINY)
    load_checkpoint(model, str(tmp_path / 'nan.pth'), allow_nonfinite=True)
    assert torch.isnan(model.head.layers.head.bias[0])


def test_conversion_errors_name_the_file(tmp_path):
    timm_like = {'patch_embed.proj.weight': torch.zeros(64, 3, 16, 16),
                 'blocks.0.norm1.weight': torch.zeros(64), 'blocks.0.surprise': torch.zeros(1)}
    torch.save(timm_like, tmp_path / 'odd_timm.pth')
    with pytest.raises(CheckpointFormatError, match='odd_timm.pth.*blocks.0.surprise'):
        get_model(SEED_CONFIG, pretrained=str(tmp_path / 'odd_timm.pth'), **TINY)


def _run_tool(args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _train_config(tmp_path: Path, images_dir: Path) -> str:
    from PIL import Image
    from test_train import tiny_cfg, write_cfg
    for i, photo in enumerate(sorted(images_dir.glob('*.png'))[:4]):
        folder = tmp_path / 'data' / 'train' / f'class_{i % 2}'
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(photo) as img:
            img.convert('RGB').resize((32, 32)).save(folder / photo.name)
    return write_cfg(tiny_cfg(tmp_path / 'data', 'evil', num_classes=2), tmp_path / 'cfg.py')


@pytest.mark.parametrize('tool', ['test', 'train_resume'])
def test_tools_refuse_a_crafted_checkpoint_in_one_line(tool, tiny_config, images_dir, marker,
                                                       tmp_path):
    evil = save(payloads(marker)['history_buffer_poisoning'], tmp_path / 'evil.pth',
                legacy=False)
    if tool == 'test':
        args = [str(ROOT / 'tools/test.py'), str(tiny_config()), str(evil)]
    else:
        args = [str(ROOT / 'tools/train.py'), _train_config(tmp_path, images_dir), '--resume',
                str(evil)]
    result = _run_tool(args + ['--work-dir', str(tmp_path / 'work')], cwd=tmp_path)
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr + result.stdout
    errors = [line for line in (result.stderr + result.stdout).splitlines()
              if 'Refusing to load' in line]
    assert len(errors) == 1 and str(evil) in errors[0]
    assert not marker.exists()
