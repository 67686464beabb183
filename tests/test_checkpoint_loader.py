"""Checkpoint loading: local files, verified cached downloads, mirrors and fallbacks, timm
keys, strict checks, pos_embed resampling, refused pickles, resumable training checkpoints.

Weights come from randomly initialised tiny models; URLs are served by a local HTTP server.
"""
import contextlib
import hashlib
import http.server
import logging
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmclip import get_model
from mmclip.checkpoint import (
    CheckpointDownloadError,
    CheckpointReadError,
    HashMismatchError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    cache_dir,
    download_checkpoint,
    load_checkpoint,
    read_checkpoint_file,
)
from mmclip.engine import MMClipRunner
from mmclip.models.utils import resize_pos_embed
from mmclip.registry import MODELS


def build(config: Path):
    cfg = Config.fromfile(config)
    return MODELS.build(cfg.model).eval()


def randomised(model):
    """Every tensor random, so a load that skips one is caught."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def save_with_hash(state, folder: Path, stem: str) -> Path:
    """``<stem>-<sha8>.pth``, the published naming."""
    tmp = folder / f'{stem}.tmp'
    torch.save(state, tmp)
    path = folder / f'{stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth'
    os.replace(tmp, path)
    return path


def dead_url(name: str) -> str:
    """A URL on a local port nobody listens on: connection refused at once."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}/{name}'


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def current_log() -> Iterator[List[str]]:
    """The messages of mmengine's current logger (``print_log(logger='current')``)."""
    logger = MMLogger.get_current_instance()
    handler = ListHandler()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def list_logger():
    logger = logging.getLogger(f'mmclip-test-{id(object())}')
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = ListHandler()
    logger.addHandler(handler)
    return logger, handler.messages


# ---- local files -------------------------------------------------------------------------
def test_published_format_loads_from_pth_and_safetensors(tiny_config, tmp_path):
    from safetensors.torch import save_file
    config = tiny_config()
    source = randomised(build(config))
    state = source.state_dict()
    files = {
        'bare.pth': lambda p: torch.save(state, p),
        'nested.pth': lambda p: torch.save({'state_dict': state, 'meta': {'epoch': 3}}, p),
        'ddp.pt': lambda p: torch.save({f'module.{k}': v for k, v in state.items()}, p),
        'model.safetensors': lambda p: save_file(state, str(p)),
    }
    for name, write in files.items():
        write(tmp_path / name)
        target = build(config)
        load_checkpoint(target, str(tmp_path / name))
        assert_same_weights(source, target)


def test_unreadable_files_name_the_file(tmp_path):
    truncated = tmp_path / 'truncated.pth'
    torch.save({'w': torch.ones(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    html = tmp_path / 'error_page.pth'
    html.write_text('<html>404 Not Found</html>')
    text = tmp_path / 'notes.safetensors'
    text.write_text('hello')
    for path in (truncated, tmp_path / 'missing.pth', html, text):
        with pytest.raises(CheckpointReadError, match=re.escape(str(path))):
            read_checkpoint_file(str(path))


def test_format_is_told_by_content_not_name(tmp_path):
    from safetensors.torch import save_file
    save_file({'w': torch.arange(3.0)}, str(tmp_path / 'really_safetensors.pth'))
    torch.save({'w': torch.arange(3.0)}, tmp_path / 'really_torch.safetensors')
    for name in ('really_safetensors.pth', 'really_torch.safetensors'):
        assert torch.equal(read_checkpoint_file(str(tmp_path / name))['w'], torch.arange(3.0))


# ---- URLs, cache, hash, mirrors, fallback ----------------------------------------------------
def test_url_is_downloaded_once_into_torch_home(tiny_config, http_server, torch_home):
    config = tiny_config()
    source = randomised(build(config))
    path = save_with_hash(source.state_dict(), http_server.root, 'tiny_in1k_20261127')
    url = http_server.url(path.name)

    first = get_model(str(config), pretrained=url)
    second = get_model(str(config), pretrained=url)

    assert http_server.requests == ['/' + path.name]  # the second call used the cache
    cached = torch_home / 'hub' / 'checkpoints' / path.name
    assert cache_dir() == str(cached.parent)
    assert cached.read_bytes() == path.read_bytes()
    assert_same_weights(source, first)
    assert_same_weights(source, second)


def test_hash_mismatch_is_refused_and_deleted(tiny_config, http_server, torch_home):
    config = tiny_config()
    good = save_with_hash(randomised(build(config)).state_dict(), http_server.root, 'tiny')
    forged = http_server.root / 'tiny-0123abcd.pth'
    good.rename(forged)
    with pytest.raises(HashMismatchError, match='0123abcd'):
        get_model(str(config), pretrained=http_server.url(forged.name))
    checkpoints = torch_home / 'hub' / 'checkpoints'
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_unreachable_url_says_which_url_and_where_to_put_the_file(torch_home, tiny_config):
    url = dead_url('clip-vit-base-p32_openai-pre_3rdparty_in1k_20221220-a0182ba9.pth')
    with pytest.raises(CheckpointDownloadError) as info:
        get_model(str(tiny_config()), pretrained=url)
    expected_path = torch_home / 'hub' / 'checkpoints' / url.rsplit('/', 1)[1]
    assert url in str(info.value)
    assert str(expected_path) in str(info.value)


def test_truncated_download_is_refused(torch_home):
    """A server that promises 1 MiB and closes after 10 bytes; the file has no hash to
    check, as the Hugging Face fallback files do not."""
    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', str(1 << 20))
            self.end_headers()
            self.wfile.write(b'0123456789')
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Truncating)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_address[1]}/timm/x/resolve/main/model.safetensors'
    try:
        with pytest.raises(CheckpointDownloadError, match=re.escape(url)):
            download_checkpoint(url, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert not any((torch_home / 'hub' / 'checkpoints').iterdir())


def test_file_placed_at_the_offline_path_is_used(torch_home, tiny_config, tmp_path):
    config = tiny_config()
    source = randomised(build(config))
    path = save_with_hash(source.state_dict(), tmp_path, 'offline')
    url = dead_url(path.name)
    (torch_home / 'hub' / 'checkpoints').mkdir(parents=True)
    os.replace(path, torch_home / 'hub' / 'checkpoints' / path.name)
    assert_same_weights(source, get_model(str(config), pretrained=url))


def test_fallback_source_is_used_when_the_first_is_unreachable(
        tiny_config, http_server, torch_home, monkeypatch):
    """``pretrained=True`` tries the zoo URL, then the timm safetensors (converted)."""
    timm = pytest.importorskip('timm')
    from safetensors.torch import save_file

    from mmclip.apis import model_zoo
    config = tiny_config(num_classes=10)
    reference = timm.create_model('vit_base_patch32_clip_224', pretrained=False, img_size=64,
                                  patch_size=16, embed_dim=64, depth=2, num_heads=2,
                                  mlp_ratio=2.0, num_classes=10).eval()
    served = http_server.root / 'timm' / 'tiny_clip' / 'resolve' / 'main'
    served.mkdir(parents=True)
    save_file(reference.state_dict(), str(served / 'model.safetensors'))
    sources = (dead_url('tiny-0123abcd.pth'),
               http_server.url('timm/tiny_clip/resolve/main/model.safetensors'))
    info = model_zoo.ModelInfo('tiny-clip', str(config), sources[0], sources, {})
    monkeypatch.setattr(model_zoo, '_zoo', lambda: {'tiny-clip': info})

    with current_log() as first:
        model = get_model('tiny-clip', pretrained=True)

    assert http_server.requests == ['/timm/tiny_clip/resolve/main/model.safetensors']
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5
    # The log and the model name the file that was loaded, and say it was converted.
    assert model.weights_source == sources[1]
    assert any('Trying the next source' in m for m in first)
    assert f'{sources[1]}: timm weights, renamed to mmclip\'s keys by its conversion table' in first
    assert f'Loaded checkpoint {sources[1]}' in first
    # The next run takes the cached fallback at once: no failed fetch of the first URL again.
    with current_log() as second:
        again = get_model('tiny-clip', pretrained=True)
    assert again.weights_source == sources[1] and len(http_server.requests) == 1
    assert not any('Cannot fetch' in m or 'Trying the next' in m for m in second), second


@pytest.mark.parametrize('how', ['env', 'argument', 'folder'])
def test_mirrors_serve_the_original_url(how, tiny_config, http_server, torch_home, monkeypatch,
                                        tmp_path):
    config = tiny_config()
    source = randomised(build(config))
    path = save_with_hash(source.state_dict(), http_server.root, 'mirrored')
    url = f'https://download.openmmlab.invalid/clip/{path.name}'
    mirror = str(http_server.root) if how == 'folder' else http_server.url('')
    mapping = {'https://download.openmmlab.invalid/clip': mirror}
    if how == 'env':
        monkeypatch.setenv('MMCLIP_MIRRORS',
                           f'https://elsewhere.invalid=http://x;'
                           f'https://download.openmmlab.invalid/clip={mirror}')
    model = get_model(str(config), pretrained=url, mirrors=None if how == 'env' else mapping)
    assert_same_weights(source, model)
    assert http_server.requests == ([] if how == 'folder' else ['/' + path.name])
    # A mirror folder's file is read where it is (no copy in the cache), and named.
    cached = torch_home / 'hub' / 'checkpoints' / path.name
    assert cached.is_file() == (how != 'folder')
    served_from = path if how == 'folder' else http_server.url(path.name)
    assert model.weights_source == f'{url} (from mirror {served_from})'


def test_a_mirror_folder_file_is_checked_in_place(tiny_config, torch_home, tmp_path):
    """Read in place, but checked as a download is: the hash its name promises, a whole
    checkpoint; it is never changed or deleted."""
    config = tiny_config()
    good = save_with_hash(randomised(build(config)).state_dict(), tmp_path, 'mirrored')
    url = f'https://download.openmmlab.invalid/clip/{good.name}'
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    mapping = {'https://download.openmmlab.invalid/clip': str(mirror)}
    with pytest.raises(CheckpointDownloadError, match='mirror file .* does not exist'):
        get_model(str(config), pretrained=url, mirrors=mapping)
    (mirror / good.name).write_bytes(good.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointDownloadError, match='not a complete checkpoint'):
        get_model(str(config), pretrained=url, mirrors=mapping)
    other = save_with_hash(randomised(build(config)).state_dict(), tmp_path, 'other')
    (mirror / good.name).write_bytes(other.read_bytes())  # whole, but not the promised file
    with pytest.raises(HashMismatchError):
        get_model(str(config), pretrained=url, mirrors=mapping)
    assert (mirror / good.name).read_bytes() == other.read_bytes()
    assert not (torch_home / 'hub' / 'checkpoints').exists() or not any(
        (torch_home / 'hub' / 'checkpoints').iterdir())


def test_bad_mirror_spec_is_a_clear_error(monkeypatch, torch_home):
    monkeypatch.setenv('MMCLIP_MIRRORS', 'https://a.invalid')
    with pytest.raises(ValueError, match='PREFIX=TARGET'):
        load_checkpoint(torch.nn.Linear(1, 1), 'https://a.invalid/x-0123abcd.pth')


# ---- formats and strictness ----------------------------------------------------------------
def test_timm_state_dict_is_renamed_and_equals_timm(tiny_config, tmp_path):
    timm = pytest.importorskip('timm')
    config = tiny_config(num_classes=10)
    reference = timm.create_model('vit_base_patch32_clip_224', pretrained=False, img_size=64,
                                  patch_size=16, embed_dim=64, depth=2, num_heads=2,
                                  mlp_ratio=2.0, num_classes=10).eval()
    torch.save(reference.state_dict(), tmp_path / 'pytorch_model.bin')
    model = build(config)
    load_checkpoint(model, str(tmp_path / 'pytorch_model.bin'))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5


def test_mismatches_are_listed(tiny_config, tmp_path):
    config = tiny_config()
    state = randomised(build(config)).state_dict()
    state.pop('backbone.ln1.bias')
    state['backbone.extra.weight'] = torch.zeros(1)
    state['head.layers.head.weight'] = torch.zeros(10, 64)
    torch.save(state, tmp_path / 'bad.pth')

    model = build(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(StateDictMismatchError) as info:
        load_checkpoint(model, str(tmp_path / 'bad.pth'))
    message = str(info.value)
    assert 'backbone.ln1.bias' in message and 'backbone.extra.weight' in message
    assert 'head.layers.head.weight: checkpoint (10, 64) vs model (1000, 64)' in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    logger, messages = list_logger()
    load_checkpoint(model, str(tmp_path / 'bad.pth'), strict=False, logger=logger)
    assert any('head.layers.head.weight' in m for m in messages)
    assert torch.equal(model.state_dict()['backbone.ln1.weight'], state['backbone.ln1.weight'])
    assert torch.equal(model.state_dict()['head.layers.head.weight'],
                       before['head.layers.head.weight'])


def test_pos_embed_of_another_grid_is_resampled_with_a_warning(tiny_config, tmp_path):
    source = randomised(build(tiny_config(img_size=64)))  # 4x4 patch grid
    torch.save(source.state_dict(), tmp_path / 'at64.pth')
    target = build(tiny_config(img_size=96))  # 6x6 patch grid
    logger, messages = list_logger()
    load_checkpoint(target, str(tmp_path / 'at64.pth'), logger=logger)
    expected = resize_pos_embed(source.backbone.pos_embed.detach(), (4, 4), (6, 6), 1)
    assert torch.equal(target.backbone.pos_embed.detach(), expected)
    assert any('Resampled backbone.pos_embed' in m and '4x4 to a 6x6' in m for m in messages)
    # The backbone adapts its own weights: torch's load_state_dict resamples too (its pre-hook).
    direct = build(tiny_config(img_size=96))
    direct.load_state_dict(source.state_dict())
    assert torch.equal(direct.backbone.pos_embed.detach(), expected)

    quiet_logger, quiet = list_logger()
    load_checkpoint(build(tiny_config(img_size=64)), str(tmp_path / 'at64.pth'),
                    logger=quiet_logger)
    assert not any('Resampled' in m for m in quiet)



def test_another_patch_size_is_reported_before_any_resampling(tiny_config, tmp_path):
    # Patch 32 at 64 px (2x2 grid) into patch 16 at 64 px (4x4): pos_embed alone could be
    # resampled, but the patch embedding cannot: that is what the error must lead with.
    torch.save(build(tiny_config(img_size=64, patch_size=32)).state_dict(), tmp_path / 'p32.pth')
    logger, messages = list_logger()
    with pytest.raises(StateDictMismatchError) as info:
        load_checkpoint(build(tiny_config(img_size=64, patch_size=16)), str(tmp_path / 'p32.pth'),
                        logger=logger)
    lead = str(info.value).splitlines()[0]
    assert 'another architecture' in lead
    assert 'backbone.patch_embed.projection.weight: checkpoint (64, 3, 32, 32) vs model ' \
           '(64, 3, 16, 16)' in lead
    assert not any('Resampled' in m for m in messages)

# ---- pickles -------------------------------------------------------------------------------
class WritesAFile:
    """Unpickling this would write ``target``: what a malicious checkpoint does."""

    def __init__(self, target: Path, how: str):
        self.target, self.how = target, how

    def __reduce__(self):
        if self.how == 'os.system':
            return os.system, (f'echo pwned > {self.target}',)
        return Path.write_text, (self.target, 'pwned')


@pytest.mark.parametrize('how,culprit', [('os.system', 'posix.system'),
                                         ('Path.write_text', 'pathlib.Path')])
def test_pickle_that_writes_a_file_is_refused_and_never_run(how, culprit, tiny_config, tmp_path):
    target = tmp_path / 'pwned.txt'
    state = build(tiny_config()).state_dict()
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': state, 'meta': WritesAFile(target, how)}, evil)
    assert not target.exists()

    with pytest.raises(UnsafeCheckpointError, match='evil.pth') as info:
        load_checkpoint(build(tiny_config()), str(evil))
    assert culprit in str(info.value) and 'never executes' in str(info.value)
    assert not target.exists()


def test_getattr_is_refused_outside_history_buffer_statistics(tmp_path):
    class GetsAnAttribute:
        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    torch.save({'x': GetsAnAttribute()}, tmp_path / 'getattr.pth')
    with pytest.raises(UnsafeCheckpointError, match=r'getattr.pth: x holds .*getattr'):
        read_checkpoint_file(str(tmp_path / 'getattr.pth'))


def test_numpy_values_are_never_built_whichever_numpy_wrote_them(tmp_path):
    """numpy 1.x pickles ``numpy.core.multiarray``, numpy 2 ``numpy._core.multiarray``;
    both are recognised as statistics and refused in a file older than mmengine."""
    values = {'message_hub': {'log_scalars': {'array': np.arange(3.0),
                                              'scalar': np.float64(2.5)}}}
    torch.save(values, tmp_path / 'np2.pth', _use_new_zipfile_serialization=False)
    data = (tmp_path / 'np2.pth').read_bytes()
    assert b'numpy._core.multiarray' in data  # the legacy format is one plain pickle
    (tmp_path / 'np1.pth').write_bytes(
        data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    for name, module in (('np1.pth', 'numpy.core'), ('np2.pth', 'numpy._core')):
        with pytest.raises(UnsafeCheckpointError, match=f'{name}: it references .*{module}'):
            read_checkpoint_file(str(tmp_path / name))


# ---- mmengine training checkpoints ---------------------------------------------------------
def _runner(work_dir: Path, max_iters: int, runner_class=None, **kwargs):
    """A small mmengine training run; ``runner_class`` defaults to mmengine's own Runner,
    which saves its message hub as HistoryBuffer objects."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    class Regression(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            x = torch.stack(inputs)
            out = self.linear(x)
            if mode == 'loss':
                return dict(loss=(out - x.sum(1, keepdim=True)).pow(2).mean())
            return out

    class Points(Dataset):
        metainfo = dict(classes=('a', 'b'))

        def __len__(self):
            return 16

        def __getitem__(self, i):
            return dict(inputs=torch.linspace(-1, 1, 4) * (i + 1) / 16)

    # default_scope: a Runner without one makes 'mmengine' the current scope for every
    # later registry build in this process.
    return (runner_class or Runner)(
        model=Regression(), work_dir=str(work_dir), default_scope='mmclip',
        train_dataloader=dict(dataset=Points(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='LinearLR', by_epoch=False, begin=0, end=4)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0), **kwargs)


def test_mmengine_checkpoint_resumes_without_its_statistics(tmp_path, http_server, torch_home,
                                                            capsys):
    """A checkpoint of plain mmengine: weights, optimizer and scheduler resume as saved;
    its numpy / HistoryBuffer logging statistics are never built, dropped with a warning."""
    first = _runner(tmp_path / 'a', max_iters=2)
    first.train()
    saved = tmp_path / 'a' / 'iter_2.pth'
    # mmengine 0.10.7 stores numpy values and HistoryBuffers beyond tensors: without
    # mmclip's allow-list, torch.load(weights_only=True) refuses the file.
    allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError, match='numpy|HistoryBuffer'):
            torch.load(saved, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(allowed)

    # A fresh process (tools/test.py on a training checkpoint) has created no
    # HistoryBuffer yet, so mmengine has not registered its statistics methods.
    probe = ('import sys, mmclip.checkpoint as c; '
             'print(sorted(c.read_checkpoint_file(sys.argv[1])))')
    out = subprocess.run([sys.executable, '-c', probe, str(saved)], check=True,
                         capture_output=True, text=True).stdout
    assert out.split()[-5:] == ["['message_hub',", "'meta',", "'optimizer',",
                                "'param_schedulers',", "'state_dict']"]
    assert 'message_hub.log_scalars.train/loss' in out

    served = save_with_hash(read_checkpoint_file(str(saved)), http_server.root, 'iter_2')
    for source in (str(saved), http_server.url(served.name)):
        # max_iters=2: the resumed run trains no further, so what it holds is what it read.
        resumed = _runner(tmp_path / 'b', max_iters=2, runner_class=MMClipRunner,
                          load_from=source, resume=True)
        resumed.train()
        assert resumed.iter == 2
        assert_same_weights(first.model, resumed.model)
        ours, theirs = (r.optim_wrapper.optimizer.state_dict()['state'][0] for r in
                        (resumed, first))
        assert all(torch.equal(ours[k], theirs[k]) for k in ('step', 'exp_avg', 'exp_avg_sq'))
        assert 'train/loss' not in resumed.message_hub.log_scalars
        assert (resumed.param_schedulers[0].state_dict() ==
                first.param_schedulers[0].state_dict())
