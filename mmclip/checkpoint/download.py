"""Fetch checkpoint URLs into a local cache, verified, with mirrors for offline clusters.

Files land in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), the
directory torch.hub and mmengine use, so a checkpoint either of them already downloaded
is found and not fetched again. A file name ending in ``-<hex>.<ext>`` (``...-b384e830.pth``)
carries the start of the file's SHA-256; a download that does not match is deleted and
refused.

Mirrors map URL prefixes to other prefixes, from the ``mirrors`` argument or the
``MMCLIP_MIRRORS`` environment variable::

    export MMCLIP_MIRRORS="https://download.openmmlab.com=http://mirror.local/openmmlab;\
    https://huggingface.co=/nfs/hf-files"

A target that is not an http(s) URL is a local directory: the file is read from there
(and still verified) instead of being downloaded.
"""
import hashlib
import http.client
import os
import os.path as osp
import re
import tempfile
import urllib.request
from typing import Mapping, Optional

import torch
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

MIRRORS_ENV = 'MMCLIP_MIRRORS'
_HASH_SUFFIX = re.compile(r'-([a-f0-9]{8,64})\.[A-Za-z0-9]+$')
_CHUNK = 1 << 20  # 1 MiB: one progress-bar step


class CheckpointDownloadError(OSError):
    """A checkpoint URL could not be fetched; the message says where to put the file."""


class HashMismatchError(CheckpointDownloadError):
    """A fetched file's SHA-256 does not start with the prefix in its name."""


def is_url(source: str) -> bool:
    return source.startswith(('http://', 'https://'))


def cache_dir() -> str:
    """``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``)."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def cached_file_name(url: str) -> str:
    """The cache's name for ``url``.

    Hash-suffixed names are kept as they are (the names torch.hub and mmengine use);
    other names (every Hugging Face file is ``model.safetensors``) get the URL path
    folded in, so that two models never share a cache file.
    """
    path = urllib.request.urlparse(url).path
    name = osp.basename(path)
    if _HASH_SUFFIX.search(name):
        return name
    return '--'.join(part for part in path.split('/') if part)


def expected_hash_prefix(url: str) -> Optional[str]:
    match = _HASH_SUFFIX.search(osp.basename(urllib.request.urlparse(url).path))
    return match.group(1) if match else None


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


def _offline_hint(url: str, dst: str) -> str:
    return (f'For offline use, download {url} elsewhere and place it at {dst} '
            f'(or map the URL prefix to a mirror or a local folder with {MIRRORS_ENV}="'
            f'PREFIX=TARGET", or the mirrors argument).')


def _stream_to(response, tmp_file, total: Optional[int], progress: bool) -> None:
    """Copy in 1 MiB chunks; a connection closed before ``total`` bytes is an error (a
    file without a hash in its name has no other check)."""
    bar = ProgressBar(-(-total // _CHUNK) if total else 0) if progress else None
    received = 0
    for chunk in iter(lambda: response.read(_CHUNK), b''):
        tmp_file.write(chunk)
        received += len(chunk)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')
    if total is not None and received != total:
        raise OSError(f'the download stopped after {received} of {total} bytes')


def _fetch(location: str, tmp_file, progress: bool, timeout: float) -> None:
    """Copy ``location`` (an http(s) URL or a local file of a mirror folder) into tmp_file."""
    if not is_url(location):
        if not osp.isfile(location):
            raise FileNotFoundError(f'mirror file {location} does not exist')
        with open(location, 'rb') as src:
            _stream_to(src, tmp_file, None, progress=False)
        return
    request = urllib.request.Request(location, headers={'User-Agent': 'mmclip'})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get('Content-Length')
        total = int(length) if length and length.isdigit() else None
        size = f' ({total / 2**20:.1f} MiB, progress in MiB)' if total else ''
        if progress:
            print_log(f'Downloading {location}{size}', logger='current')
        _stream_to(response, tmp_file, total, progress)


def download_checkpoint(url: str,
                        mirrors: Optional[Mapping[str, str]] = None,
                        progress: bool = True,
                        timeout: float = 30.0) -> str:
    """Return the local path of ``url``, downloading it into the cache once.

    Args:
        url: http(s) URL of the checkpoint; it names the cache file (see
            ``cached_file_name``), whichever mirror serves it.
        mirrors: URL prefix -> mirror prefix or local folder; merged over the
            ``MMCLIP_MIRRORS`` environment variable.
        progress: show a progress bar (1 step = 1 MiB).
        timeout: seconds to wait for the server before giving up.

    Raises:
        CheckpointDownloadError: the URL (or its mirror) could not be fetched; the
            message names the URL and the exact path to place the file at.
        HashMismatchError: the fetched file's SHA-256 does not start with the prefix in
            its name; the file is deleted.
    """
    dst = osp.join(cache_dir(), cached_file_name(url))
    if osp.isfile(dst):
        return dst
    location = resolve_mirror(url, mirrors)
    os.makedirs(osp.dirname(dst), exist_ok=True)
    # A unique temporary file in the cache folder, renamed when complete: concurrent
    # processes never read a half-written checkpoint.
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(dst), prefix='.partial-')
    try:
        with os.fdopen(fd, 'wb') as tmp_file:
            _fetch(location, tmp_file, progress, timeout)
        _verify(tmp, url, location)
        os.replace(tmp, dst)
    except HashMismatchError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as err:
        # URLError, HTTPError, timeouts and refused connections are all OSErrors.
        via = f' (via mirror {location})' if location != url else ''
        raise CheckpointDownloadError(
            f'Cannot fetch checkpoint {url}{via}: {err}. {_offline_hint(url, dst)}') from None
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dst


def _verify(path: str, url: str, location: str) -> None:
    prefix = expected_hash_prefix(url)
    if prefix is None:
        return
    digest = sha256_of(path)
    if not digest.startswith(prefix):
        raise HashMismatchError(
            f'Refusing checkpoint {location}: its SHA-256 is {digest}, but the file name '
            f'promises one starting with {prefix}. The download was corrupted or the file '
            f'was replaced; it has been deleted.')
