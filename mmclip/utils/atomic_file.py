"""Files written whole or not at all: the checkpoint cache, its digest records, the
zero-shot head cache and ``tools/test.py --out``.

The content goes to a new partial file beside the target, which is renamed over the target
when complete, so no reader ever sees half a file. The partial file is created 0o666 (not
``mkstemp``'s 0600, which would stay on the renamed file): the user's umask decides, as
for any file they create, and a shared ``TORCH_HOME`` gets group-readable files.
"""
import os
import os.path as osp
import secrets
from contextlib import contextmanager
from typing import IO, Iterator, Tuple

# Names of mmclip's own partial files; only these are ever cleaned up as stale.
PARTIAL_PREFIX = '.mmclip-partial-'


def new_partial_file(folder: str) -> Tuple[int, str]:
    """A new partial file in ``folder`` for mmclip to write: (open descriptor, path)."""
    path = osp.join(folder, PARTIAL_PREFIX + secrets.token_hex(8))
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path


@contextmanager
def atomic_write(path: str, mode: str = 'wb') -> Iterator[IO]:
    """Write ``path`` through the file this yields; it replaces ``path`` only if the
    ``with`` block finishes, and is removed otherwise. The folder must exist."""
    fd, tmp = new_partial_file(osp.dirname(osp.abspath(path)))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
