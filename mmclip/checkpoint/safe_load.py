"""Read checkpoint files without ever executing pickled code.

``.safetensors`` files hold tensors only. Everything else goes through
``torch.load(weights_only=True)``, whose unpickler builds tensors, containers and
primitive types, plus the types added with ``torch.serialization.add_safe_globals``.
``register_safe_globals`` adds exactly what mmengine 0.10.7 writes into a training
checkpoint (found by saving one from a Runner and listing its globals), so ``--resume``
and ``load_from`` keep working under torch >= 2.6 without turning the safety off.
"""
import os.path as osp
import pickle
import re
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

MapLocation = Union[str, torch.device, Callable, dict, None]

# numpy dtype classes of the numeric scalars and arrays mmengine logs (np.float64 ETA,
# int64 counters, float32 HistoryBuffer arrays, ...).
_NUMPY_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object that is not plain weights; it was not run."""


class CheckpointReadError(ValueError):
    """A checkpoint file is missing, truncated or not a checkpoint at all."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may call: HistoryBuffer's statistics methods.

    A HistoryBuffer pickles its ``_statistics_methods`` (min, max, mean, current and any
    registered with ``HistoryBuffer.register_statistics``) as
    ``getattr(HistoryBuffer, name)``. Registered under the name ``builtins.getattr``, this
    replaces the builtin for the unpickler, so ``getattr(<anything else>, name)`` is refused.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    # The built-in four are only added to _statistics_methods by the first HistoryBuffer
    # created; a fresh process may load a checkpoint before that.
    allowed = {'min', 'max', 'mean', 'current', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint; only the statistics '
        f'methods of mmengine HistoryBuffer are ({sorted(allowed)}).')


def register_safe_globals() -> None:
    """Allow-list the non-tensor types of mmengine 0.10.7 training checkpoints.

    numpy arrays, dtypes and scalars (message hub, runtime info), mmengine's
    ``HistoryBuffer`` (logged scalars) and its statistics methods. numpy 1.x wrote
    ``numpy.core.multiarray.*`` where numpy 2 writes ``numpy._core.multiarray.*``; both
    names are mapped, so checkpoints from either load. Idempotent.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    torch.serialization.add_safe_globals([
        np.ndarray, np.dtype, HistoryBuffer,
        *[(getattr(multiarray, name), f'{package}.multiarray.{name}')
          for name in ('_reconstruct', 'scalar') for package in ('numpy.core', 'numpy._core')],
        (_history_buffer_getattr, 'builtins.getattr'),
        *[type(np.dtype(code)) for code in _NUMPY_DTYPE_CODES],
    ])


def _torch_device(map_location: MapLocation) -> str:
    if isinstance(map_location, (str, torch.device)):
        return str(map_location)
    return 'cpu'


def _file_format(path: str) -> Optional[str]:
    """'safetensors', 'torch' (zip or legacy pickle) or None, from the file's first bytes,
    not its name: a ``.pth`` may hold safetensors, and a text file is neither."""
    with open(path, 'rb') as f:
        head = f.read(9)
    header_size = int.from_bytes(head[:8], 'little') if len(head) == 9 else 0
    if head[8:9] == b'{' and 0 < header_size < osp.getsize(path):
        return 'safetensors'
    if head[:4] == b'PK\x03\x04' or head[:1] == b'\x80':  # zip archive / pickle PROTO
        return 'torch'
    return None


def read_checkpoint_file(path: str, map_location: MapLocation = 'cpu', mmap: bool = False) -> Any:
    """Load ``path``: safetensors with safetensors, a PyTorch file with
    ``torch.load(weights_only=True)`` (told apart by content, whatever the extension).

    ``mmap=True`` memory-maps a zip-format PyTorch file (safetensors files always are):
    for weights that are copied into a model and dropped, the file's pages stay in the
    page cache instead of a second full copy in process memory, which the allocator
    keeps after it is freed (2.4 GB for ViT-H/14).

    Raises:
        CheckpointReadError: missing, truncated or unreadable file (naming it).
        UnsafeCheckpointError: the file holds a pickled object outside the allow-list;
            nothing in it was executed.
    """
    if not osp.isfile(path):
        raise CheckpointReadError(f'Checkpoint file {path} does not exist.')
    file_format = _file_format(path)
    if file_format is None:
        raise CheckpointReadError(f'{path} is neither a PyTorch checkpoint (.pth/.pt/.bin) nor '
                                  f'a safetensors file (an HTML error page or a text file?).')
    if file_format == 'safetensors':
        return _read_safetensors(path, map_location)
    try:
        if mmap and _mappable(path):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        # A file object, not the path: torch 2.14 picks safetensors by file extension.
        with open(path, 'rb') as f:
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(_refusal_message(path, err)) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as err:
        raise CheckpointReadError(
            f'Cannot read checkpoint {path} with torch.load ({type(err).__name__}: {err}); '
            f'is the file complete?') from None


def _mappable(path: str) -> bool:
    """torch maps only zip-format files, and only by path (read as safetensors when the
    path ends in .safetensors)."""
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04' and not path.endswith('.safetensors')


def _read_safetensors(path: str, map_location: MapLocation) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(path, device=_torch_device(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointReadError(f'Cannot read safetensors checkpoint {path}: {err}') from None


def _refusal_message(path: str, err: pickle.UnpicklingError) -> str:
    # torch's message is long and suggests turning the safety off; keep what names the culprit.
    text = str(err)
    culprit = re.search(r'GLOBAL ([\w.]+)', text)
    if culprit:
        detail = f'it references {culprit.group(1)}'
    else:
        detail = text.split('WeightsUnpickler error:')[-1].strip().split('\n')[0]
    return (f'Refusing to load {path}: it contains a pickled object that is not plain '
            f'weights ({detail}). mmclip loads checkpoints with '
            f'torch.load(weights_only=True) and never executes pickled code. If you trust '
            f'the file, re-save only its tensors (torch.save(model.state_dict(), ...) or '
            f'safetensors) and load that instead.')
