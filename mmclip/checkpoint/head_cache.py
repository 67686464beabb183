"""The on-disk cache of built zero-shot heads: ``<torch hub dir>/mmclip/zeroshot_heads/``.

A head (float32 [K, D] class embeddings, rows L2-normalised) is stored as
``<key>.safetensors`` with its key in the metadata; the key (a SHA-256 of the text tower's
weights and the prompts) is the model layer's (``mmclip.models.utils.zero_shot``). Files are
written atomically (``mmclip.utils.atomic_file``) and read with safetensors (no pickle).
The folder may be shared or writable by others, so a file is data to check, never
trusted: only a regular file is read (a symbolic link is not followed), and one whose
stored key differs, or that does not hold a finite float32 [K, D] tensor with unit-norm
rows, is ignored with a warning (the caller builds the head again).
"""
import json
import logging
import os
import os.path as osp
import stat
import struct
from typing import Optional

import torch
from mmengine.logging import print_log

from mmclip.utils.atomic_file import atomic_write

UNIT_NORM_TOLERANCE = 1e-3
HEADER_ALLOWANCE = 1 << 16  # bytes of safetensors header a cache file may add


def head_path(key: str) -> str:
    return osp.join(torch.hub.get_dir(), 'mmclip', 'zeroshot_heads', f'{key}.safetensors')


def read_head(key: str, num_classes: int, width: int) -> Optional[torch.Tensor]:
    """The cached float32 [num_classes, width] head stored for ``key``, or None: none is
    cached, or the file is not one ``write_head`` wrote for ``key`` (one warning)."""
    path = head_path(key)
    if not osp.lexists(path):
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load
    emb = None
    try:
        data = _read_regular_file(path, num_classes * width * 4 + HEADER_ALLOWANCE)
        stored = _stored_key(data)
        if stored != key:
            why = 'it holds no key' if stored is None else f'it was stored for the key {stored}'
        else:
            emb = load(data).get('class_embeddings')
            why = _head_problem(emb, num_classes, width)
    except (SafetensorError, OSError, ValueError, struct.error) as err:
        why = str(err) or type(err).__name__
    if why is None:
        return emb
    print_log(f'Ignoring the zero-shot head cache {path} ({why}); building it again.',
              logger='current', level=logging.WARNING)
    return None


def write_head(key: str, embeddings: torch.Tensor) -> None:
    """Cache ``embeddings`` [K, D] for ``key``; a folder that cannot be written costs the
    next run time, not correctness (one warning)."""
    from safetensors.torch import save
    path = head_path(key)
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        with atomic_write(path) as f:  # replaces a link at ``path``, never writes through it
            f.write(save({'class_embeddings': embeddings.detach().cpu().contiguous()},
                         metadata={'key': key}))
    except OSError as err:
        print_log(f'Could not cache the zero-shot head in {path}: {err}', logger='current',
                  level=logging.WARNING)


def _read_regular_file(path: str, max_size: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_size`` bytes; never
    through a symbolic link (``O_NOFOLLOW``: someone else's file behind the cache name)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO would block
    except OSError as err:
        raise OSError('it is a symbolic link' if osp.islink(path) else str(err)) from None
    with os.fdopen(fd, 'rb') as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError('it is not a regular file')
        if info.st_size > max_size:
            raise OSError(f'it is {info.st_size} bytes, more than the {max_size} a head of '
                          f'this shape takes')
        return f.read()


def _stored_key(data: bytes) -> Optional[str]:
    """The ``key`` of a safetensors file's metadata (its JSON header), or None."""
    (size, ) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + size]) if size <= len(data) - 8 else None
    metadata = header.get('__metadata__') if isinstance(header, dict) else None
    return metadata.get('key') if isinstance(metadata, dict) else None


def _head_problem(emb: Optional[torch.Tensor], num_classes: int, width: int) -> Optional[str]:
    """Why ``emb`` is not a head ``write_head`` stores, or None."""
    if emb is None or emb.dtype != torch.float32 or emb.shape != (num_classes, width):
        got = 'none' if emb is None else f'{emb.dtype} {list(emb.shape)}'
        return f'"class_embeddings" is {got}, not float32 [{num_classes}, {width}]'
    if not bool(emb.isfinite().all()):
        return 'it holds NaN or Inf'
    worst = float((emb.norm(dim=1) - 1).abs().max())
    if worst > UNIT_NORM_TOLERANCE:
        return f'its rows are not unit-norm (off by up to {worst:.3g})'
    return None
