"""Fetch checkpoint URLs into a local cache and verify every file before it is used.

Files land in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), the
directory torch.hub and mmengine use, so a checkpoint either of them already downloaded
is found and not fetched again. A file name ending in ``-<hex>.<ext>`` (``...-b384e830.pth``)
carries the start of the file's SHA-256. Such a file is checked before it is used,
whether mmclip downloaded it, found it in the cache or was given its local path; the
result is recorded (keyed by the file's device, inode, size, mtime and ctime, in
``$TORCH_HOME/hub/mmclip/verified``) so that an unchanged file is hashed once. The ctime
is in the key because a file rewritten in place can be given its old mtime back, and
setting it moves the ctime. A file that fails is refused and left where it is; only a
download mmclip itself made is deleted. Where the server publishes the file's SHA-256
(Hugging Face's ``X-Linked-Etag``), the download is checked against it too.

The bytes verified are the bytes loaded: ``open_verified`` opens the file once, checks
what that descriptor reads, and hands the reader ``/proc/self/fd/N``, the same open file,
so a file renamed over the name after the check is never read. Where ``/proc`` is absent
the reader gets the name, and the file is refused if the name no longer leads to the
same, unchanged file after the read.

Downloads are written to a temporary file, checked and only then renamed into the cache,
with the permissions the user's umask gives. One process per cache downloads a given URL;
the others wait for its file. Every download is bounded:

- size: the server's ``Content-Length`` when it sends one, and ``max_bytes`` (default
  16 GiB, ``DEFAULT_MAX_BYTES``) always; an announced size over the cap is refused before
  the body is read, and a body longer than it announced, or than the cap, is refused;
- time: ``timeout`` seconds for the server to answer and for each read, at least 64 KiB
  every ``stall_timeout`` seconds (default 60: a server dripping a byte at a time has
  stalled), and ``deadline`` seconds (default 3 h) for the whole download;
- completeness: a zip-format (PyTorch) file's central directory must read and hold
  ``data.pkl``, a safetensors file's JSON header must parse with every tensor's data
  inside the file, a legacy PyTorch file must start with a pickle protocol marker. An
  error page, a truncated file or a body that is not a checkpoint is deleted, not cached.

Each refusal is one error naming the URL. The model zoo records no file sizes, so
``Content-Length`` and the cap are the size bounds.

Mirrors map URL prefixes to other prefixes, from the ``mirrors`` argument or the
``MMCLIP_MIRRORS`` environment variable::

    export MMCLIP_MIRRORS="https://download.openmmlab.com=http://mirror.local/openmmlab;\
    https://huggingface.co=/nfs/hf-files"

A target that is not an http(s) URL is a local directory: the file is read from there
(and still verified, and bounded by ``max_bytes``) instead of being downloaded.
"""
import contextlib
import hashlib
import http.client
import json
import os
import os.path as osp
import re
import socket
import stat
import time
import urllib.request
import zipfile
from typing import BinaryIO, Callable, Iterator, Mapping, NamedTuple, Optional, Union

import torch
from filelock import FileLock, Timeout
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from mmclip.utils.atomic_file import PARTIAL_PREFIX, atomic_write, new_partial_file

from .safe_load import checkpoint_format

MIRRORS_ENV = 'MMCLIP_MIRRORS'
_HASH_SUFFIX = re.compile(r'-([a-f0-9]{8,64})\.[A-Za-z0-9]+$')
_SHA256 = re.compile(r'^[0-9a-f]{64}$')
_UNSAFE_NAME_CHARS = re.compile(r'[^A-Za-z0-9._-]')
_CHUNK = 1 << 20  # 1 MiB: one progress-bar step
# A partial file's mtime moves with every write, so one untouched this long belongs to a
# killed download, never to a live one (the deadline below ends any download sooner).
STALE_PARTIAL_SECONDS = 6 * 3600
DEFAULT_DEADLINE = 3 * 3600.0
# Over twice the largest zoo file (ViT-H/14, 2.5 GB); a server cannot fill the disk.
DEFAULT_MAX_BYTES = 16 << 30
DEFAULT_STALL_TIMEOUT = 60.0
# Less than this in one stall window is a stall: a byte every few seconds never trips a
# socket timeout, yet would take the whole deadline.
MIN_BYTES_PER_STALL_WINDOW = 64 << 10
# safetensors' own limit; a claimed header size is checked before the header is read.
_MAX_SAFETENSORS_HEADER = 100 << 20
# A file opened for hashing must not be translated (Windows opens in text mode without it),
# and a FIFO put at the name must not block the open.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, 'O_BINARY', 0) | getattr(os, 'O_NONBLOCK', 0)


class CheckpointDownloadError(OSError):
    """A checkpoint URL could not be fetched; the message says where to put the file."""


class HashMismatchError(CheckpointDownloadError):
    """A file's SHA-256 does not match the prefix in its name or the published digest."""


class Fetched(NamedTuple):
    """A checkpoint ready to read.

    ``path``: the local file; ``source``: the path or URL asked for; ``origin``: where
    the file came from this time (``source`` itself, a mirror URL or file, or ``path``
    for a file already in the cache).
    """
    path: str
    source: str
    origin: str

    def describe(self) -> str:
        """How messages name it: the source, and the mirror when one served it (a mirror
        folder's file is read where it is, so its path is named)."""
        cached = self.origin == self.path and osp.dirname(self.path) == cache_dir()
        if self.origin == self.source or cached:
            return self.source
        return f'{self.source} (from mirror {self.origin})'


def cached_copy(url: str) -> Optional[str]:
    """The cache's file for ``url`` if there is one (not verified yet)."""
    path = osp.join(cache_dir(), cached_file_name(url))
    return path if osp.isfile(path) else None


def is_url(source: str) -> bool:
    return source.startswith(('http://', 'https://'))


def cache_dir() -> str:
    """``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``)."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def _state_dir(kind: str) -> str:
    """mmclip's own bookkeeping (locks, verification records), beside the cache."""
    return osp.join(torch.hub.get_dir(), 'mmclip', kind)


def cached_file_name(url: str) -> str:
    """The cache's name for ``url``.

    Hash-suffixed names are kept as they are (the names torch.hub and mmengine use; the
    hash makes them the same file whichever host served it). Other names (every Hugging
    Face file is ``model.safetensors``) get the host and URL path folded in, so that two
    models, or two hosts, never share a cache file.
    """
    parts = urllib.request.urlparse(url)
    name = osp.basename(parts.path)
    if _HASH_SUFFIX.search(name):
        return name
    host = parts.netloc.rpartition('@')[2].lower()  # never user:password
    name = '--'.join([host, *(part for part in parts.path.split('/') if part)])
    return _UNSAFE_NAME_CHARS.sub('_', name)


def _hash_prefix_of_name(name: str) -> Optional[str]:
    match = _HASH_SUFFIX.search(name)
    return match.group(1) if match else None


def expected_hash_prefix(url: str) -> Optional[str]:
    return _hash_prefix_of_name(osp.basename(urllib.request.urlparse(url).path))


def parse_mirrors(spec: Optional[str]) -> dict:
    """``'PREFIX=TARGET;PREFIX=TARGET'`` -> ``{PREFIX: TARGET}``."""
    mirrors = {}
    for item in filter(None, (part.strip() for part in (spec or '').split(';'))):
        prefix, sep, target = item.partition('=')
        if not sep or not prefix.strip() or not target.strip():
            raise ValueError(f'{MIRRORS_ENV} entries must look like PREFIX=TARGET, separated '
                             f'by ";"; got {item!r} in {spec!r}.')
        mirrors[prefix.strip()] = target.strip()
    return mirrors


def resolve_mirror(url: str, mirrors: Optional[Mapping[str, str]] = None) -> str:
    """``url`` with its longest matching prefix replaced (``mirrors`` first, then the env)."""
    table = {**parse_mirrors(os.environ.get(MIRRORS_ENV)), **dict(mirrors or {})}
    matches = [prefix for prefix in table if url.startswith(prefix)]
    if not matches:
        return url
    prefix = max(matches, key=len)
    target, rest = table[prefix], url[len(prefix):]
    return target.rstrip('/') + '/' + rest.lstrip('/')


def sha256_of(file: Union[str, int]) -> str:
    """The SHA-256 of a file given by path, or by an open descriptor: then the bytes hashed
    are those of the file open there, whatever its name leads to by now. The descriptor is
    read from its start and left open."""
    if isinstance(file, str):
        with open(file, 'rb') as f:
            return _sha256_of_descriptor(f.fileno())
    return _sha256_of_descriptor(file)


def _sha256_of_descriptor(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    for chunk in iter(lambda: os.read(fd, _CHUNK), b''):
        digest.update(chunk)
    return digest.hexdigest()


# ---- verifying a file before use -------------------------------------------------------------
def _stat_key(st: os.stat_result) -> dict:
    """What tells one version of a file from another: a file renamed over the name has
    another device or inode, and a rewrite moves the ctime even when the mtime is put
    back (``os.utime`` sets the ctime too)."""
    return dict(dev=st.st_dev, inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns)


def _record_path(path: str) -> str:
    key = hashlib.sha256(osp.realpath(path).encode()).hexdigest()[:32]
    return osp.join(_state_dir('verified'), key + '.json')


def _recorded_digest(path: str, stat_key: dict) -> Optional[str]:
    """The SHA-256 recorded for ``path`` if it was recorded for ``stat_key``, else None."""
    try:
        with open(_record_path(path)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get('path') != osp.realpath(path):
        return None
    digest = record.get('sha256')
    if record.get('stat') != stat_key or not _SHA256.match(str(digest)):
        return None
    return digest


def _record_digest(path: str, stat_key: dict, digest: str) -> None:
    """Remember that ``path``, as ``stat_key`` describes it (taken before hashing, so a
    file changed meanwhile is hashed again), has ``digest``. Written to a temporary file
    and renamed, so a reader never sees half a record; a cache the user cannot write to
    only means hashing again next time."""
    record = dict(path=osp.realpath(path), stat=stat_key, sha256=digest)
    target = _record_path(path)
    try:
        os.makedirs(osp.dirname(target), exist_ok=True)
        with atomic_write(target, 'w') as f:
            json.dump(record, f)
    except OSError:
        pass


def _check_descriptor(path: str, fd: int, opened: os.stat_result, prefix: str,
                      remedy: str) -> None:
    """Check the file open as ``fd`` (``opened`` is its fstat, taken before hashing, so a
    file changed meanwhile is hashed again next time) against ``prefix``: its record if
    one was made for exactly this version of it, else its bytes."""
    stat_key = _stat_key(opened)
    digest = _recorded_digest(path, stat_key)
    if digest is None:
        digest = sha256_of(fd)
        if digest.startswith(prefix):
            _record_digest(path, stat_key, digest)
    if not digest.startswith(prefix):
        raise HashMismatchError(
            f'Refusing checkpoint {path}: its name promises a SHA-256 starting with {prefix}, '
            f'but the file\'s is {digest}. It was left in place: {remedy}.')


def _path_of_descriptor(fd: int, opened: os.stat_result) -> Optional[str]:
    """A path that opens the very file open as ``fd`` whatever its name leads to now
    (Linux's ``/proc/self/fd/N``), or None where the system has none."""
    alias = f'/proc/self/fd/{fd}'
    try:
        st = os.stat(alias)
    except OSError:
        return None
    return alias if (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino) else None


_CHANGED_REMEDY = 'check what else writes to it, and replace it with the published file'


@contextlib.contextmanager
def open_verified(path: str, remedy: str = _CHANGED_REMEDY) -> Iterator[str]:
    """Verify ``path`` (see ``verify_file``) and yield a path to read exactly the bytes
    verified.

    The file is opened once and the checks read that descriptor. The path yielded is
    ``/proc/self/fd/N``, the same open file, so renaming another file over ``path``
    after the check changes nothing that is read; it works for ``torch.load`` (also with
    ``mmap=True``) and safetensors. After the ``with`` block, a file written in place
    during it (size or mtime) is refused. Where ``/proc`` is absent, ``path`` itself is
    yielded and, after the block, must still lead to the same unchanged file (device,
    inode, size, mtime, ctime). Memory-mapped tensors read the file later too: no check
    can cover someone who writes into it in place; that is what the records' ctime
    catches on the next use. A name without a hash, or no file, is yielded as it is.

    Raises:
        HashMismatchError: the file fails its hash, or changed while it was read; it is
            left in place and ``remedy`` ends the message.
    """
    prefix = _hash_prefix_of_name(osp.basename(path))
    if prefix is None or not osp.isfile(path):
        yield path
        return
    fd = os.open(path, _OPEN_FLAGS)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced since the isfile above
            raise HashMismatchError(f'Refusing checkpoint {path}: it is no longer a regular '
                                    f'file. It was left in place: {remedy}.')
        _check_descriptor(path, fd, opened, prefix, remedy)
        alias = _path_of_descriptor(fd, opened)
        yield alias or path
        changed = _written_since(fd, opened) if alias else _replaced_since(path, opened)
        if changed:
            raise HashMismatchError(
                f'Refusing checkpoint {path}: it was changed or replaced after its SHA-256 '
                f'was checked, while it was read. It was left in place: {remedy}.')
    finally:
        os.close(fd)


def _written_since(fd: int, opened: os.stat_result) -> bool:
    """Whether the file open as ``fd`` was written since ``opened`` (its size or mtime).
    Not its ctime: renaming another file over the name moves the ctime of the file it
    unlinks, yet the bytes behind ``fd`` are still those verified."""
    now = os.fstat(fd)
    return (now.st_size, now.st_mtime_ns) != (opened.st_size, opened.st_mtime_ns)


def _replaced_since(path: str, opened: os.stat_result) -> bool:
    """Whether ``path`` no longer leads to the version of the file ``opened`` describes."""
    try:
        return _stat_key(os.stat(path)) != _stat_key(opened)
    except OSError:  # the name was removed
        return True


def verify_file(path: str, remedy: str) -> None:
    """Check ``path`` against the SHA-256 prefix its name carries (nothing to check
    without one), hashing it only if it changed since it last passed. A caller that reads
    the file afterwards should read it through ``open_verified`` instead: the name may
    lead to another file by then.

    Args:
        path: the file about to be used; never deleted or changed.
        remedy: what the user should do if it fails (ends the message).

    Raises:
        HashMismatchError: one line naming the path, the expected prefix and the digest.
    """
    with open_verified(path, remedy):
        pass


def verify_local_file(path: str) -> None:
    """``verify_file`` for a path the user gave (e.g. a published ``...-b384e830.pth``
    copied by hand)."""
    prefix = _hash_prefix_of_name(osp.basename(path))
    verify_file(path, f'replace it with the published file, or rename it if "-{prefix}" '
                      f'in its name is not the start of its SHA-256')


# ---- downloading -----------------------------------------------------------------------------
def _offline_hint(url: str, dst: str) -> str:
    return (f'For offline use, download {url} elsewhere and place it at {dst} '
            f'(or map the URL prefix to a mirror or a local folder with {MIRRORS_ENV}="'
            f'PREFIX=TARGET", or the mirrors argument).')


def _remove_stale_partials(folder: str) -> None:
    """Delete mmclip's own temporary files left by killed downloads."""
    now = time.time()
    for entry in os.scandir(folder):
        if not entry.name.startswith(PARTIAL_PREFIX):
            continue
        try:
            if (entry.is_file(follow_symlinks=False) and
                    now - entry.stat(follow_symlinks=False).st_mtime > STALE_PARTIAL_SECONDS):
                os.remove(entry.path)
        except OSError:  # removed by another process meanwhile
            pass


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Keeps the headers of each redirect: Hugging Face publishes a file's SHA-256 on its
    redirect to the CDN, not on the CDN's answer."""

    def __init__(self) -> None:
        super().__init__()
        self.headers = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def published_sha256(headers) -> Optional[str]:
    """The SHA-256 a response publishes: ``X-Linked-Etag`` (Hugging Face LFS files) or an
    ``ETag`` of 64 hex digits, normalised as huggingface_hub does; else None."""
    etag = headers.get('X-Linked-Etag') or headers.get('ETag')
    if etag is None:
        return None
    etag = etag.strip()
    etag = etag[2:] if etag.startswith('W/') else etag
    etag = etag.strip('"').lower()
    return etag if _SHA256.match(etag) else None


class _Received(NamedTuple):
    sha256: str
    published_sha256: Optional[str]
    content_type: str


class _Limits(NamedTuple):
    """The bounds of one download (see the module docstring)."""
    timeout: float
    deadline: float
    max_bytes: int
    stall_timeout: float


def _stream_to(read: Callable[[int], bytes], tmp_file: BinaryIO, total: Optional[int],
               progress: bool, limits: _Limits, deadline_at: float) -> str:
    """Copy ``read()`` chunks into ``tmp_file`` until EOF and return their SHA-256.

    Raises OSError, naming the bound, when more arrives than ``total`` (the announced
    size) or than ``limits.max_bytes``, when the connection closes before ``total`` bytes
    (a file without a hash in its name has no other check), and when the download runs
    past ``deadline_at`` or stalls. The deadline and the stall are checked after each read;
    one read waits at most the socket timeout.
    """
    limit = limits.max_bytes if total is None else total
    bar = ProgressBar(-(-total // _CHUNK) if total else 0) if progress else None
    digest, received, steps = hashlib.sha256(), 0, 0
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            # One byte past the limit is enough to know the body is too long.
            chunk = read(min(_CHUNK, limit + 1 - received))
        except socket.timeout:
            if received == total:
                break  # all announced bytes arrived, the server kept the connection open
            raise OSError(f'no byte arrived for {limits.timeout:g} s (timeout) after '
                          f'{received} bytes') from None
        if not chunk:
            break
        received += len(chunk)
        if received > limit:
            raise OSError(f'the server sent more than its Content-Length of {total} bytes'
                          if total is not None else
                          f'the download exceeded the {limit}-byte cap (max_bytes)')
        tmp_file.write(chunk)
        digest.update(chunk)
        now = time.monotonic()
        if now > deadline_at:
            raise OSError(f'the download did not finish within its {limits.deadline:g} s '
                          f'deadline ({received} bytes received)')
        window_bytes += len(chunk)
        if now - window_start >= limits.stall_timeout:
            if window_bytes < MIN_BYTES_PER_STALL_WINDOW:
                raise OSError(
                    f'the download stalled: {window_bytes} bytes in {now - window_start:.1f} '
                    f's, under the {MIN_BYTES_PER_STALL_WINDOW} bytes per '
                    f'{limits.stall_timeout:g} s (stall_timeout) it needs ({received} bytes '
                    f'received)')
            window_start, window_bytes = now, 0
        while bar is not None and steps < received // _CHUNK:
            bar.update()
            steps += 1
    if bar is not None:
        bar.file.write('\n')
    if total is not None and received != total:
        raise OSError(f'the download stopped after {received} of {total} bytes')
    return digest.hexdigest()


def _announced_size(headers, max_bytes: int) -> Optional[int]:
    """The response's Content-Length, refused before the body is read if over the cap."""
    length = headers.get('Content-Length')
    total = int(length) if length and length.isdigit() else None
    if total is not None and total > max_bytes:
        raise OSError(f'the server announces {total} bytes, more than the {max_bytes}-byte '
                      f'cap (max_bytes)')
    return total


def _fetch(location: str, tmp_file: BinaryIO, progress: bool, limits: _Limits) -> _Received:
    """Copy ``location`` (an http(s) URL or a local file of a mirror folder) into tmp_file."""
    deadline_at = time.monotonic() + limits.deadline
    if not is_url(location):
        if not osp.isfile(location):
            raise FileNotFoundError(f'mirror file {location} does not exist')
        with open(location, 'rb') as src:
            digest = _stream_to(src.read1, tmp_file, None, False, limits, deadline_at)
        return _Received(digest, None, '')
    redirects = _RecordingRedirects()
    request = urllib.request.Request(location, headers={'User-Agent': 'mmclip'})
    with urllib.request.build_opener(redirects).open(request,
                                                     timeout=limits.timeout) as response:
        total = _announced_size(response.headers, limits.max_bytes)
        size = f' ({total / 2**20:.1f} MiB, progress in MiB)' if total else ''
        if progress:
            print_log(f'Downloading {location}{size}', logger='current')
        # http.client stops at Content-Length and drops the rest unseen; read to the end of
        # the body instead (urllib asks for "Connection: close"), so a longer one is refused.
        response.length = None
        # read1: returns what has arrived; read(n) would wait for all n bytes, past the deadline.
        digest = _stream_to(response.read1, tmp_file, total, progress, limits, deadline_at)
        published = [published_sha256(h) for h in (*redirects.headers, response.headers)]
        return _Received(digest, next(filter(None, published), None),
                         response.headers.get('Content-Type', ''))


# ---- is a download a whole checkpoint --------------------------------------------------------
def _offsets_within(offsets, data_size: int) -> bool:
    return (isinstance(offsets, list) and len(offsets) == 2
            and all(type(offset) is int for offset in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size)


def _safetensors_problem(f: BinaryIO, size: int) -> Optional[str]:
    """A safetensors file: an 8-byte header size, a JSON header of that size, and every
    tensor's ``data_offsets`` inside the data that follows."""
    header_size = int.from_bytes(f.read(8), 'little')
    if header_size > min(_MAX_SAFETENSORS_HEADER, size - 8):
        return (f'its header claims {header_size} bytes; the file has {size}, and '
                f'safetensors allows {_MAX_SAFETENSORS_HEADER}')
    try:
        header = json.loads(f.read(header_size))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both are
        return f'its header is not JSON ({err})'
    if not isinstance(header, dict):
        return 'its header is not a JSON object'
    data_size = size - 8 - header_size
    for name, entry in header.items():
        offsets = entry.get('data_offsets') if isinstance(entry, dict) else None
        if name != '__metadata__' and not _offsets_within(offsets, data_size):
            return (f'tensor {name[:80]!r} has data_offsets {repr(offsets)[:80]}, not '
                    f'[begin, end] within the {data_size} data bytes the file holds')
    return None


def _zip_problem(f: BinaryIO, size: int) -> Optional[str]:
    """A PyTorch zip file: a central directory zipfile reads (it is at the end of the
    file, so a truncated download has none), entries inside the file, a ``data.pkl``."""
    try:
        with zipfile.ZipFile(f) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        return f'its zip directory cannot be read ({err}); the file is truncated or no zip'
    outside = [e.filename for e in entries if e.header_offset + e.compress_size > size]
    if outside:
        return f'zip entries {outside[:3]} lie past the end of the {size}-byte file'
    if not any(e.filename.rpartition('/')[2] == 'data.pkl' for e in entries):
        return 'the zip archive holds no data.pkl, so it is no PyTorch checkpoint'
    return None


def _completeness_problem(path: str, file_format: str) -> Optional[str]:
    """Why ``path``, of ``file_format`` (``checkpoint_format``), is not a whole
    checkpoint, or None. Reads the zip directory or safetensors header, not the tensors:
    enough to catch a truncated download, or an error page that begins with a
    checkpoint's magic bytes, before it is cached."""
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if file_format == 'safetensors':
            return _safetensors_problem(f, size)
        head = f.read(4)
        f.seek(0)
        if head == b'PK\x03\x04':
            return _zip_problem(f, size)
    # A legacy (pre-zip) PyTorch file is a pickle: PROTO, then protocol 2 (torch.save's).
    if len(head) < 2 or head[1] not in range(2, 6):
        return f'a legacy PyTorch file starts with a pickle PROTO 2-5; this one with {head!r}'
    return None


def _not_a_checkpoint(path: str, kind: str = '') -> Optional[str]:
    """Why ``path`` is not a whole checkpoint (``kind``: the server's content type, for the
    message), or None."""
    file_format = checkpoint_format(path)
    if file_format is None:
        with open(path, 'rb') as f:
            head = f.read(32)
        return f'it is not a checkpoint{kind} but starts with {head!r} (an error or login page?)'
    problem = _completeness_problem(path, file_format)
    return None if problem is None else f'it is not a complete checkpoint{kind}: {problem}'


def _check_download(path: str, url: str, via: str, received: _Received) -> None:
    """Refuse what is not a whole checkpoint or fails a hash, before it enters the cache."""
    kind = f' ({received.content_type})' if received.content_type else ''
    problem = _not_a_checkpoint(path, kind)
    if problem is not None:
        raise CheckpointDownloadError(f'Refusing the download of {url}{via}: {problem}; it '
                                      f'was deleted, not cached.')
    prefix = expected_hash_prefix(url)
    if prefix is not None and not received.sha256.startswith(prefix):
        promise = f'the file name promises one starting with {prefix}'
    elif received.published_sha256 not in (None, received.sha256):
        promise = f'the server published {received.published_sha256}'
    else:
        return
    raise HashMismatchError(
        f'Refusing the download of {url}{via}: its SHA-256 is {received.sha256}, but '
        f'{promise}. The download was corrupted or the file replaced; it was deleted.')


def _download(url: str, location: str, dst: str, progress: bool, limits: _Limits) -> None:
    """Fetch into a temporary file in the cache folder, check it, rename it to ``dst``:
    no process ever reads a half-written or unchecked checkpoint."""
    via = f' (via mirror {location})' if location != url else ''
    fd, tmp = new_partial_file(osp.dirname(dst))
    try:
        with os.fdopen(fd, 'wb') as tmp_file:
            received = _fetch(location, tmp_file, progress, limits)
            tmp_file.flush()
            _check_download(tmp, url, via, received)
            os.replace(tmp, dst)
            # Still the file checked, whatever is renamed over dst from now on: its record
            # must never vouch for another file.
            written = os.fstat(tmp_file.fileno())
    except CheckpointDownloadError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as err:
        # URLError, HTTPError, timeouts and refused connections are all OSErrors.
        raise CheckpointDownloadError(
            f'Cannot fetch checkpoint {url}{via}: {err}. {_offline_hint(url, dst)}') from None
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    if expected_hash_prefix(url):
        _record_digest(dst, _stat_key(written), received.sha256)


def _use_cached(url: str, dst: str) -> Fetched:
    verify_file(dst, f'delete it to download {url} again, or replace it with that file')
    return Fetched(dst, url, dst)


def _use_mirror_file(url: str, path: str, dst: str) -> Fetched:
    """A mirror folder's file is read where it is (a copy into the cache would double a
    350 MB file); it is checked as a download is: a whole checkpoint, and the hash its
    name promises."""
    if not osp.isfile(path):
        raise CheckpointDownloadError(f'Cannot fetch checkpoint {url}: its mirror file {path} '
                                      f'does not exist. {_offline_hint(url, dst)}')
    problem = _not_a_checkpoint(path)
    if problem is not None:
        raise CheckpointDownloadError(f'Refusing the mirror file {path} of {url}: {problem}.')
    verify_file(path, f'replace it with {url}')
    return Fetched(path, url, path)


def fetch_url(url: str,
              mirrors: Optional[Mapping[str, str]] = None,
              progress: bool = True,
              timeout: float = 30.0,
              deadline: float = DEFAULT_DEADLINE,
              max_bytes: int = DEFAULT_MAX_BYTES,
              stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> Fetched:
    """``download_checkpoint``, also saying where the file came from (see ``Fetched``)."""
    dst = osp.join(cache_dir(), cached_file_name(url))
    if osp.isfile(dst):
        return _use_cached(url, dst)
    location = resolve_mirror(url, mirrors)
    if not is_url(location):
        return _use_mirror_file(url, location, dst)
    os.makedirs(osp.dirname(dst), exist_ok=True)
    os.makedirs(_state_dir('locks'), exist_ok=True)
    lock = FileLock(osp.join(_state_dir('locks'), osp.basename(dst) + '.lock'),
                    timeout=deadline + timeout)
    try:
        with lock:
            if osp.isfile(dst):  # another process downloaded it while this one waited
                return _use_cached(url, dst)
            _remove_stale_partials(osp.dirname(dst))
            _download(url, location, dst, progress,
                      _Limits(timeout, deadline, max_bytes, stall_timeout))
    except Timeout:
        raise CheckpointDownloadError(
            f'Another process has been downloading {url} into {dst} for over '
            f'{deadline + timeout:g} s (lock {lock.lock_file}). {_offline_hint(url, dst)}'
        ) from None
    return Fetched(dst, url, location)


def download_checkpoint(url: str,
                        mirrors: Optional[Mapping[str, str]] = None,
                        progress: bool = True,
                        timeout: float = 30.0,
                        deadline: float = DEFAULT_DEADLINE,
                        max_bytes: int = DEFAULT_MAX_BYTES,
                        stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> str:
    """Return the local path of ``url``, downloading it into the cache once.

    The file is verified here; to read it, read it through ``open_verified``, which
    makes sure the bytes read are the bytes verified.

    Args:
        url: http(s) URL of the checkpoint; it names the cache file (see
            ``cached_file_name``), whichever mirror serves it.
        mirrors: URL prefix -> mirror prefix or local folder; merged over the
            ``MMCLIP_MIRRORS`` environment variable.
        progress: show a progress bar (1 step = 1 MiB).
        timeout: seconds to wait for the server's answer, and for each read.
        deadline: seconds the whole download may take (a server that trickles bytes
            never hits ``timeout``).
        max_bytes: the most bytes a download may have, whatever the server announces.
        stall_timeout: seconds within which at least ``MIN_BYTES_PER_STALL_WINDOW``
            (64 KiB) must arrive; less, and the download has stalled.

    Raises:
        CheckpointDownloadError: the URL (or its mirror) could not be fetched, broke a
            bound (size, stall, deadline), or sent something that is not a whole
            checkpoint; the message names the URL and the exact path to place the file at.
        HashMismatchError: the file's SHA-256 does not start with the prefix in its name
            or differs from the one the server published. A download is deleted; a file
            already in the cache is left in place.
    """
    return fetch_url(url, mirrors, progress, timeout, deadline, max_bytes, stall_timeout).path
