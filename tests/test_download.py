"""Checkpoint downloads and the cache: every hash-named file verified before use (once per
change, the bytes verified being the bytes loaded), files mmclip did not write never
deleted, the source loaded named in the log, and download hygiene (not-a-checkpoint and
incomplete answers, host-keyed names, stale partials, deadline, stalls, size caps, umask,
one download for concurrent processes, the server's published SHA-256).

Checkpoints are tiny tensors; URLs are served by 127.0.0.1 servers the tests start.
"""
import hashlib
import http.server
import io
import logging
import multiprocessing
import os
import stat
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable, List, Union

import pytest
import torch
from conftest import LocalServer

from mmclip.checkpoint import (
    CheckpointDownloadError,
    HashMismatchError,
    download,
    download_checkpoint,
    load_checkpoint,
)
from mmclip.checkpoint.loader import read_source
from mmclip.checkpoint.safe_load import CheckpointReadError, read_checkpoint_file


def checkpoint_bytes(value: float) -> bytes:
    buffer = io.BytesIO()
    torch.save({'weight': torch.full((2, 2), value), 'bias': torch.full((2, ), value)}, buffer)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hashed_name(data: bytes, stem: str = 'tiny_in1k_20261127') -> str:
    """``<stem>-<sha8>.pth``, the published naming."""
    return f'{stem}-{sha256(data)[:8]}.pth'


def value_of(checkpoint) -> float:
    return checkpoint['bias'][0].item()


class ScriptedServer:
    """A 127.0.0.1 server answering each GET with ``respond(handler)``; records paths."""

    def __init__(self, respond: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        self.requests: List[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                try:
                    respond(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f'http://127.0.0.1:{self._httpd.server_address[1]}/{path}'

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def scripted():
    servers = []

    def start(respond) -> ScriptedServer:
        servers.append(ScriptedServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def send(handler, body: bytes, status: int = 200, **headers) -> None:
    handler.send_response(status)
    handler.send_header('Content-Length', str(len(body)))
    for key, value in headers.items():
        handler.send_header(key.replace('_', '-'), value)
    handler.end_headers()
    handler.wfile.write(body)


def named(file: Union[str, int]) -> str:
    """The path of a file ``download.sha256_of`` is given, by path or open descriptor."""
    return file if isinstance(file, str) else os.readlink(f'/proc/self/fd/{file}')


@pytest.fixture
def hash_calls(monkeypatch) -> List[str]:
    """The paths of the files ``download.sha256_of`` hashes from now on."""
    calls, original = [], download.sha256_of

    def counting(file):
        calls.append(named(file))
        return original(file)

    monkeypatch.setattr(download, 'sha256_of', counting)
    return calls


def cache_files(torch_home: Path) -> List[str]:
    folder = torch_home / 'hub' / 'checkpoints'
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def put_in_cache(torch_home: Path, name: str, data: bytes) -> Path:
    path = torch_home / 'hub' / 'checkpoints' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---- every hash-named file is verified before use ------------------------------------------
def test_wrong_file_at_the_cache_path_is_refused_and_kept(torch_home, http_server):
    good, wrong = checkpoint_bytes(1.0), checkpoint_bytes(2.0)
    path = put_in_cache(torch_home, hashed_name(good), wrong)
    url = http_server.url(path.name)

    with pytest.raises(HashMismatchError) as info:
        read_source(url)

    message = str(info.value)
    assert '\n' not in message
    assert str(path) in message and sha256(good)[:8] in message and sha256(wrong) in message
    assert 'left in place' in message and url in message  # what to do: fetch it again
    assert path.read_bytes() == wrong  # not ours to delete
    assert http_server.requests == []


def test_verified_file_is_hashed_once_until_it_changes(torch_home, http_server, hash_calls):
    good = checkpoint_bytes(1.0)
    path = put_in_cache(torch_home, hashed_name(good), good)
    url = http_server.url(path.name)

    assert value_of(read_source(url)[0]) == 1.0
    assert value_of(read_source(url)[0]) == 1.0
    assert hash_calls == [str(path)]  # the second load trusted the record

    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # touched: checked again
    assert value_of(read_source(url)[0]) == 1.0
    assert len(hash_calls) == 2

    path.write_bytes(checkpoint_bytes(3.0))  # rewritten: refused
    with pytest.raises(HashMismatchError, match='left in place'):
        read_source(url)
    assert len(hash_calls) == 3
    assert http_server.requests == []


def test_download_is_not_hashed_again_on_use(torch_home, http_server, hash_calls):
    good = checkpoint_bytes(1.0)
    (http_server.root / hashed_name(good)).write_bytes(good)
    url = http_server.url(hashed_name(good))

    assert value_of(read_source(url)[0]) == 1.0  # hashed while it streamed in
    assert value_of(read_source(url)[0]) == 1.0
    assert hash_calls == []
    assert http_server.requests == ['/' + hashed_name(good)]


def test_local_path_named_with_a_hash_is_verified(tmp_path, hash_calls):
    good = checkpoint_bytes(1.0)
    wrong = tmp_path / hashed_name(good)
    wrong.write_bytes(checkpoint_bytes(2.0))
    with pytest.raises(HashMismatchError, match='rename it') as info:
        read_source(str(wrong))
    assert str(wrong) in str(info.value) and sha256(good)[:8] in str(info.value)
    assert wrong.read_bytes() == checkpoint_bytes(2.0)

    right = tmp_path / 'copy' / hashed_name(good)
    right.parent.mkdir()
    right.write_bytes(good)
    plain = tmp_path / 'epoch_3.pth'
    plain.write_bytes(good)
    assert value_of(read_source(str(right))[0]) == 1.0
    assert value_of(read_source(str(plain))[0]) == 1.0
    assert hash_calls == [str(wrong), str(right)]  # a name without a hash is not checked


def test_in_place_rewrite_with_the_mtime_put_back_is_hashed_again(torch_home, http_server,
                                                                 hash_calls):
    """Size, inode and mtime restored: only the ctime (which ``os.utime`` moves) tells."""
    good, bad = checkpoint_bytes(1.0), checkpoint_bytes(3.0)
    assert len(good) == len(bad)
    path = put_in_cache(torch_home, hashed_name(good), good)
    url = http_server.url(path.name)
    assert value_of(read_source(url)[0]) == 1.0
    before = path.stat()

    time.sleep(0.05)  # timestamps move in kernel clock ticks
    with open(path, 'r+b') as f:
        f.write(bad)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert ((after.st_ino, after.st_size, after.st_mtime_ns) ==
            (before.st_ino, before.st_size, before.st_mtime_ns))
    assert after.st_ctime_ns != before.st_ctime_ns

    with pytest.raises(HashMismatchError, match='left in place'):
        read_source(url)
    assert hash_calls == [str(path)] * 2
    assert path.read_bytes() == bad


@pytest.mark.parametrize('proc', [True, False], ids=['proc-fd', 'no-proc'])
@pytest.mark.parametrize('swap_after', [1, 2], ids=['fetch-hash', 'read-hash'])
def test_file_swapped_after_its_hash_is_never_loaded(swap_after, proc, torch_home, tmp_path,
                                                     monkeypatch):
    """Another file renamed over the name right after hash number ``swap_after``: the
    one when the source is fetched, or the one when it is read. No record can be written
    (a read-only TORCH_HOME), so both hash. Without /proc the name is checked again
    after the read."""
    good, other = checkpoint_bytes(1.0), checkpoint_bytes(2.0)
    path = tmp_path / hashed_name(good)
    path.write_bytes(good)
    swap_in = tmp_path / 'other.pth'
    swap_in.write_bytes(other)
    monkeypatch.setattr(download, '_record_digest', lambda *args: None)
    if not proc:
        monkeypatch.setattr(download, '_path_of_descriptor', lambda fd, opened: None)
    digests, original = [], download.sha256_of

    def hash_then_swap(file):
        digests.append(original(file))
        if len(digests) == swap_after:
            os.replace(swap_in, path)
        return digests[-1]

    monkeypatch.setattr(download, 'sha256_of', hash_then_swap)

    if proc and swap_after == 2:
        assert value_of(read_source(str(path))[0]) == 1.0  # the bytes hashed
    else:  # /proc: the read hashes the new file; none: the name is checked after a read
        expected = 'promises' if proc else 'changed or replaced'
        with pytest.raises(HashMismatchError, match=expected) as info:
            read_source(str(path))
        assert str(path) in str(info.value) and '\n' not in str(info.value)
    assert path.read_bytes() == other  # the swap did happen, and the file was left
    assert digests[0] == sha256(good)


def test_file_rewritten_while_it_is_read_is_refused(tmp_path):
    good = checkpoint_bytes(1.0)
    path = tmp_path / hashed_name(good)
    path.write_bytes(good)
    time.sleep(0.05)  # timestamps move in kernel clock ticks
    with pytest.raises(HashMismatchError, match='changed or replaced'):
        with download.open_verified(str(path)) as readable:
            assert readable != str(path)  # /proc/self/fd/N
            assert value_of(read_checkpoint_file(readable, mmap=True)) == 1.0
            path.write_bytes(checkpoint_bytes(3.0))


def test_read_errors_name_the_file_not_its_descriptor(tmp_path):
    broken = checkpoint_bytes(1.0)[:300]
    path = tmp_path / hashed_name(broken)
    path.write_bytes(broken)
    with pytest.raises(CheckpointReadError) as info:
        read_source(str(path))
    assert str(path) in str(info.value) and '/proc/' not in str(info.value)


# ---- the log names the source actually loaded ------------------------------------------------
def test_log_names_the_source_loaded(torch_home, http_server, caplog):
    (http_server.root / 'fallback.pth').write_bytes(checkpoint_bytes(1.0))
    logger = logging.getLogger('mmclip-test-download')
    missing, fallback = http_server.url('missing.pth'), http_server.url('fallback.pth')
    mirrored = 'https://download.openmmlab.invalid/clip/fallback.pth'
    mirror = {'https://download.openmmlab.invalid/clip': http_server.url('')}

    with caplog.at_level(logging.INFO, logger=logger.name):
        load_checkpoint(torch.nn.Linear(2, 2), [missing, fallback], logger=logger)
        load_checkpoint(torch.nn.Linear(2, 2), mirrored, logger=logger, mirrors=mirror)
        load_checkpoint(torch.nn.Linear(2, 2), [missing, fallback], logger=logger)  # cached

    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Loaded')]
    assert loaded == [f'Loaded checkpoint {fallback}',
                      f'Loaded checkpoint {mirrored} (from mirror {fallback})',
                      f'Loaded checkpoint {fallback}']


# ---- download hygiene ------------------------------------------------------------------------
def test_html_page_is_refused_and_not_cached(torch_home, scripted):
    page = b'<!DOCTYPE html><html><body>Please log in</body></html>'
    server = scripted(lambda h: send(h, page, Content_Type='text/html'))
    url = server.url('models/vit.pth')
    for _ in range(2):  # nothing cached: the second call asks the server again
        with pytest.raises(CheckpointDownloadError) as info:
            read_source(url)
        assert url in str(info.value) and 'text/html' in str(info.value)
        assert 'not a checkpoint' in str(info.value)
    assert len(server.requests) == 2
    assert cache_files(torch_home) == []


def test_names_without_a_hash_are_cached_per_host(torch_home, tmp_path):
    servers = []
    for value in (1.0, 2.0):
        root = tmp_path / f'host{value:g}'
        root.mkdir()
        (root / 'model.pth').write_bytes(checkpoint_bytes(value))
        servers.append(LocalServer(root))
    try:
        assert [value_of(read_source(s.url('model.pth'))[0]) for s in servers] == [1.0, 2.0]
        assert [s.requests for s in servers] == [['/model.pth'], ['/model.pth']]
    finally:
        for server in servers:
            server.close()
    assert len(cache_files(torch_home)) == 2


def test_stale_partial_files_of_mmclip_are_cleaned(torch_home, http_server):
    folder = torch_home / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    old = time.time() - 7 * 3600
    for name, mtime in (('.mmclip-partial-killed', old), ('.mmclip-partial-live', None),
                        ('model.pth.1234.partial', old), ('notes.txt', old)):
        (folder / name).write_bytes(b'x')
        if mtime is not None:
            os.utime(folder / name, (mtime, mtime))
    (http_server.root / 'x.pth').write_bytes(checkpoint_bytes(1.0))

    download_checkpoint(http_server.url('x.pth'), progress=False)

    names = cache_files(torch_home)
    assert '.mmclip-partial-killed' not in names
    assert {'.mmclip-partial-live', 'model.pth.1234.partial', 'notes.txt'} <= set(names)


def test_trickling_server_hits_the_deadline(torch_home, scripted):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header('Content-Length', '1000')
        handler.end_headers()
        for _ in range(1000):
            handler.wfile.write(b'\x80')
            handler.wfile.flush()
            time.sleep(0.05)

    url = scripted(trickle).url('slow.pth')
    start = time.monotonic()
    with pytest.raises(CheckpointDownloadError, match='deadline') as info:
        download_checkpoint(url, progress=False, timeout=5, deadline=0.5)
    assert time.monotonic() - start < 3
    assert url in str(info.value)
    assert cache_files(torch_home) == []


@pytest.mark.parametrize('umask', [0o022, 0o002], ids=['022', '002'])
def test_cached_file_mode_follows_the_umask(umask, torch_home, http_server):
    (http_server.root / 'x.pth').write_bytes(checkpoint_bytes(1.0))
    previous = os.umask(umask)
    try:
        path = download_checkpoint(http_server.url('x.pth'), progress=False)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def _download_in_child(url: str, results) -> None:
    results.put(Path(download_checkpoint(url, progress=False)).read_bytes())


def test_concurrent_processes_download_once(torch_home, scripted):
    data = checkpoint_bytes(1.0)

    def slow(handler):
        time.sleep(0.5)  # long enough for every process to be waiting on the lock
        send(handler, data)

    server = scripted(slow)
    url = server.url('shared.pth')
    context = multiprocessing.get_context('fork')
    results = context.Queue()
    workers = [context.Process(target=_download_in_child, args=(url, results))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    fetched = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert fetched == [data] * 3
    assert server.requests == ['/shared.pth']


@pytest.mark.parametrize('where', ['redirect', 'etag'])
@pytest.mark.parametrize('right', [True, False])
def test_published_sha256_is_checked(where, right, torch_home, scripted):
    """Hugging Face publishes an LFS file's SHA-256 as ``X-Linked-Etag`` on its redirect to
    the CDN; other servers may send it as the ``ETag``."""
    data = checkpoint_bytes(1.0)
    published = f'"{sha256(data if right else checkpoint_bytes(2.0))}"'

    def respond(handler):
        if where == 'redirect' and handler.path.endswith('model.safetensors'):
            send(handler, b'', status=302, Location='/cdn/blob', X_Linked_Etag=published)
        elif where == 'redirect':
            send(handler, data, ETag='"cdn-etag-1"')
        else:
            send(handler, data, ETag=published)

    server = scripted(respond)
    url = server.url('timm/tiny/resolve/main/model.safetensors')
    if right:
        assert value_of(read_source(url)[0]) == 1.0
        assert len(cache_files(torch_home)) == 1
        return
    with pytest.raises(HashMismatchError) as info:
        read_source(url)
    assert url in str(info.value) and published.strip('"') in str(info.value)
    assert cache_files(torch_home) == []


# ---- bounds: stalls, sizes, completeness -----------------------------------------------------
def test_dripping_server_is_refused_as_stalled(torch_home, scripted):
    """A byte every 2 s never trips the socket timeout; the stall check ends it."""
    def drip(handler):
        handler.send_response(200)
        handler.send_header('Content-Length', '100')
        handler.end_headers()
        for _ in range(5):
            handler.wfile.write(b'\x80')
            handler.wfile.flush()
            time.sleep(2)

    url = scripted(drip).url('drip.pth')
    start = time.monotonic()
    with pytest.raises(CheckpointDownloadError, match='stalled') as info:
        download_checkpoint(url, progress=False, stall_timeout=1)
    assert time.monotonic() - start < 4
    assert url in str(info.value) and '\n' not in str(info.value)
    assert cache_files(torch_home) == []


def test_silent_server_is_refused_after_the_timeout(torch_home, scripted):
    def fall_silent(handler):
        handler.send_response(200)
        handler.send_header('Content-Length', '100')
        handler.end_headers()
        handler.wfile.write(b'\x80' * 10)
        handler.wfile.flush()
        time.sleep(3)

    url = scripted(fall_silent).url('silent.pth')
    start = time.monotonic()
    with pytest.raises(CheckpointDownloadError, match='no byte arrived for 1 s') as info:
        download_checkpoint(url, progress=False, timeout=1)
    assert time.monotonic() - start < 2.5
    assert url in str(info.value) and 'after 10 bytes' in str(info.value)
    assert cache_files(torch_home) == []


@pytest.mark.parametrize('announced', [False, True], ids=['endless', 'announced'])
def test_body_over_the_cap_is_refused(announced, torch_home, scripted):
    """A body without Content-Length that never ends, or a Content-Length over the cap
    (refused before the body is read)."""
    cap = 256 << 10

    def endless(handler):
        handler.send_response(200)
        if announced:
            handler.send_header('Content-Length', str(cap + 1))
        handler.end_headers()
        for _ in range(100):  # 6.4 MiB at most, unless the client hangs up first
            handler.wfile.write(b'\x80' * (64 << 10))

    server = scripted(endless)
    url = server.url('endless.pth')
    with pytest.raises(CheckpointDownloadError, match='max_bytes') as info:
        download_checkpoint(url, progress=False, max_bytes=cap)
    assert url in str(info.value)
    assert ('announces' in str(info.value)) == announced
    assert cache_files(torch_home) == []


def test_body_longer_than_its_content_length_is_refused(torch_home, scripted):
    data = checkpoint_bytes(1.0)
    server = scripted(lambda h: (send(h, data), h.wfile.write(b'\0' * 1000)))
    url = server.url('longer.pth')
    with pytest.raises(CheckpointDownloadError, match='more than its Content-Length') as info:
        download_checkpoint(url, progress=False)
    assert url in str(info.value)
    assert cache_files(torch_home) == []


def test_server_keeping_the_connection_open_after_the_body_is_fine(torch_home, scripted):
    """The whole body arrived; nothing more comes before the timeout: it is complete."""
    data = checkpoint_bytes(1.0)

    def keep_open(handler):
        send(handler, data)
        handler.wfile.flush()
        time.sleep(3)

    path = download_checkpoint(scripted(keep_open).url('open.pth'), progress=False, timeout=1)
    assert Path(path).read_bytes() == data


def safetensors_bytes(value: float) -> bytes:
    from safetensors.torch import save
    return save({'weight': torch.full((2, 2), value), 'bias': torch.full((2, ), value)})


def legacy_bytes(value: float) -> bytes:
    buffer = io.BytesIO()
    torch.save({'weight': torch.full((2, 2), value), 'bias': torch.full((2, ), value)}, buffer,
               _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def safetensors_with_header(header: bytes, data: bytes = b'\0' * 16) -> bytes:
    return len(header).to_bytes(8, 'little') + header + data


def zip_bytes(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr(name, b'x' * 100)
    return buffer.getvalue()


INCOMPLETE = {
    'truncated-zip': lambda: checkpoint_bytes(1.0)[:len(checkpoint_bytes(1.0)) // 2],
    'zip-without-data.pkl': lambda: zip_bytes('index.html'),
    'html-starting-with-PK': lambda: b'PK\x03\x04<!DOCTYPE html><html>Log in</html>' * 10,
    'truncated-safetensors': lambda: safetensors_bytes(1.0)[:-4],
    'safetensors-header-not-json': lambda: safetensors_with_header(b'{"weight": [1, 2'),
    'safetensors-offsets-not-ints': lambda: safetensors_with_header(
        b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": ["0", 16]}}'),
    'legacy-without-protocol': lambda: b'\x80\x00' + legacy_bytes(1.0)[2:],
}


@pytest.mark.parametrize('kind', list(INCOMPLETE))
def test_incomplete_checkpoint_is_refused_and_not_cached(kind, torch_home, scripted):
    body = INCOMPLETE[kind]()
    server = scripted(lambda h: send(h, body, Content_Type='application/octet-stream'))
    url = server.url('models/vit.pth')
    for _ in range(2):  # nothing cached: the second call asks the server again
        with pytest.raises(CheckpointDownloadError, match='not a complete checkpoint') as info:
            download_checkpoint(url, progress=False)
        assert url in str(info.value) and 'not cached' in str(info.value)
        assert '\n' not in str(info.value)
    assert len(server.requests) == 2
    assert cache_files(torch_home) == []


@pytest.mark.parametrize('make', [checkpoint_bytes, legacy_bytes, safetensors_bytes],
                         ids=['zip', 'legacy', 'safetensors'])
def test_whole_checkpoint_of_each_format_is_cached(make, torch_home, http_server):
    data = make(1.0)
    (http_server.root / 'model.pth').write_bytes(data)
    url = http_server.url('model.pth')
    assert value_of(read_source(url)[0]) == 1.0
    assert value_of(read_source(url)[0]) == 1.0
    assert http_server.requests == ['/model.pth']
    assert len(cache_files(torch_home)) == 1
