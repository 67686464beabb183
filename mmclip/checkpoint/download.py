"""Fetch checkpoint URLs into a local cache and verify every file before it is used.

Files land in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), the
directory torch.hub and mmengine use, so a checkpoint either of them already downloaded
is found and not fetched again. A file name ending in ``-<hex>.<ext>`` (``...-b384e830.pth``)
carries the start of the file's SHA-256. Such a file is checked before it is used,
whether mmclip downloaded it, found it in the cache or was given its local path; the
result is recorded (keyed by the file's size, mtime and inode, in
``$TORCH_HOME/hub/mmclip/verified``) so that an unchanged file is hashed once. A file
that fails is refused and left where it is; only a download mmclip itself made is deleted.
Where the server publishes the file's SHA-256 (Hugging Face's ``X-Linked-Etag``), the
download is checked against it too.

Downloads are written to a temporary file, checked (a checkpoint, not an HTML page; the
hashes) and only then renamed into the cache, with the permissions the user's umask
gives. One process per cache downloads a given URL; the others wait for its file.

Mirrors map URL prefixes to other prefixes, from the ``mirrors`` argument or the
``MMCLIP_MIRRORS`` environment variable::

    export MMCLIP_MIRRORS="https://download.openmmlab.com=http://mirror.local/openmmlab;\
    https://huggingface.co=/nfs/hf-files"

A target that is not an http(s) URL is a local directory: the file is read from there
(and still verified) instead of being downloaded.
"""
import hashlib
import http.client
import json
import os
import os.path as osp
import re
import time
import urllib.request
from typing import Mapping, NamedTuple, Optional

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
        """How messages name it: the source, and the mirror when one served it."""
        if self.origin in (self.source, self.path):
            return self.source
        return f'{self.source} (from mirror {self.origin})'


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


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


# ---- verifying a file before use -------------------------------------------------------------
def _stat_key(path: str) -> dict:
    st = os.stat(path)
    return dict(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


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


def verify_file(path: str, remedy: str) -> None:
    """Check ``path`` against the SHA-256 prefix its name carries (nothing to check
    without one), hashing it only if it changed since it last passed.

    Args:
        path: the file about to be used; never deleted or changed.
        remedy: what the user should do if it fails (ends the message).

    Raises:
        HashMismatchError: one line naming the path, the expected prefix and the digest.
    """
    prefix = _hash_prefix_of_name(osp.basename(path))
    if prefix is None or not osp.isfile(path):
        return
    stat_key = _stat_key(path)
    digest = _recorded_digest(path, stat_key)
    if digest is None:
        digest = sha256_of(path)
        if digest.startswith(prefix):
            _record_digest(path, stat_key, digest)
    if not digest.startswith(prefix):
        raise HashMismatchError(
            f'Refusing checkpoint {path}: its name promises a SHA-256 starting with {prefix}, '
            f'but the file\'s is {digest}. It was left in place: {remedy}.')


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


def _stream_to(read, tmp_file, total: Optional[int], progress: bool,
               deadline_at: float, deadline: float) -> str:
    """Copy ``read()`` chunks into ``tmp_file`` until EOF and return their SHA-256.

    Raises OSError when the download runs past ``deadline_at`` (checked after each read;
    one read waits at most the socket timeout) or a connection closes before ``total``
    bytes (a file without a hash in its name has no other check).
    """
    bar = ProgressBar(-(-total // _CHUNK) if total else 0) if progress else None
    digest, received, steps = hashlib.sha256(), 0, 0
    for chunk in iter(lambda: read(_CHUNK), b''):
        tmp_file.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        if time.monotonic() > deadline_at:
            raise OSError(f'the download did not finish within its {deadline:g} s deadline '
                          f'({received} bytes received)')
        while bar is not None and steps < received // _CHUNK:
            bar.update()
            steps += 1
    if bar is not None:
        bar.file.write('\n')
    if total is not None and received != total:
        raise OSError(f'the download stopped after {received} of {total} bytes')
    return digest.hexdigest()


def _fetch(location: str, tmp_file, progress: bool, timeout: float,
           deadline: float) -> _Received:
    """Copy ``location`` (an http(s) URL or a local file of a mirror folder) into tmp_file."""
    deadline_at = time.monotonic() + deadline
    if not is_url(location):
        if not osp.isfile(location):
            raise FileNotFoundError(f'mirror file {location} does not exist')
        with open(location, 'rb') as src:
            digest = _stream_to(src.read1, tmp_file, None, False, deadline_at, deadline)
        return _Received(digest, None, '')
    redirects = _RecordingRedirects()
    request = urllib.request.Request(location, headers={'User-Agent': 'mmclip'})
    with urllib.request.build_opener(redirects).open(request, timeout=timeout) as response:
        length = response.headers.get('Content-Length')
        total = int(length) if length and length.isdigit() else None
        size = f' ({total / 2**20:.1f} MiB, progress in MiB)' if total else ''
        if progress:
            print_log(f'Downloading {location}{size}', logger='current')
        # read1: returns what has arrived; read(n) would wait for all n bytes, past the deadline.
        digest = _stream_to(response.read1, tmp_file, total, progress, deadline_at, deadline)
        published = [published_sha256(h) for h in (*redirects.headers, response.headers)]
        return _Received(digest, next(filter(None, published), None),
                         response.headers.get('Content-Type', ''))


def _check_download(path: str, url: str, via: str, received: _Received) -> None:
    """Refuse what is not a checkpoint or fails a hash, before it enters the cache."""
    if checkpoint_format(path) is None:
        with open(path, 'rb') as f:
            head = f.read(32)
        kind = f' ({received.content_type})' if received.content_type else ''
        raise CheckpointDownloadError(
            f'Refusing the download of {url}{via}: it is not a checkpoint{kind} but starts '
            f'with {head!r} (an error or login page?); it was not cached.')
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


def _download(url: str, location: str, dst: str, progress: bool, timeout: float,
              deadline: float) -> None:
    """Fetch into a temporary file in the cache folder, check it, rename it to ``dst``:
    no process ever reads a half-written or unchecked checkpoint."""
    via = f' (via mirror {location})' if location != url else ''
    fd, tmp = new_partial_file(osp.dirname(dst))
    try:
        with os.fdopen(fd, 'wb') as tmp_file:
            received = _fetch(location, tmp_file, progress, timeout, deadline)
        _check_download(tmp, url, via, received)
        os.replace(tmp, dst)
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
        _record_digest(dst, _stat_key(dst), received.sha256)


def _use_cached(url: str, dst: str) -> Fetched:
    verify_file(dst, f'delete it to download {url} again, or replace it with that file')
    return Fetched(dst, url, dst)


def fetch_url(url: str,
              mirrors: Optional[Mapping[str, str]] = None,
              progress: bool = True,
              timeout: float = 30.0,
              deadline: float = DEFAULT_DEADLINE) -> Fetched:
    """``download_checkpoint``, also saying where the file came from (see ``Fetched``)."""
    dst = osp.join(cache_dir(), cached_file_name(url))
    if osp.isfile(dst):
        return _use_cached(url, dst)
    location = resolve_mirror(url, mirrors)
    os.makedirs(osp.dirname(dst), exist_ok=True)
    os.makedirs(_state_dir('locks'), exist_ok=True)
    lock = FileLock(osp.join(_state_dir('locks'), osp.basename(dst) + '.lock'),
                    timeout=deadline + timeout)
    try:
        with lock:
            if osp.isfile(dst):  # another process downloaded it while this one waited
                return _use_cached(url, dst)
            _remove_stale_partials(osp.dirname(dst))
            _download(url, location, dst, progress, timeout, deadline)
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
                        deadline: float = DEFAULT_DEADLINE) -> str:
    """Return the local path of ``url``, downloading it into the cache once.

    Args:
        url: http(s) URL of the checkpoint; it names the cache file (see
            ``cached_file_name``), whichever mirror serves it.
        mirrors: URL prefix -> mirror prefix or local folder; merged over the
            ``MMCLIP_MIRRORS`` environment variable.
        progress: show a progress bar (1 step = 1 MiB).
        timeout: seconds to wait for the server before giving up.
        deadline: seconds the whole download may take (a server that trickles bytes
            never hits ``timeout``).

    Raises:
        CheckpointDownloadError: the URL (or its mirror) could not be fetched, or sent
            something that is not a checkpoint; the message names the URL and the exact
            path to place the file at.
        HashMismatchError: the file's SHA-256 does not start with the prefix in its name
            or differs from the one the server published. A download is deleted; a file
            already in the cache is left in place.
    """
    return fetch_url(url, mirrors, progress, timeout, deadline).path
