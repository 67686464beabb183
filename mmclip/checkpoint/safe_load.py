"""Read checkpoint files without ever executing code from them.

``.safetensors`` files hold tensors only. Everything else goes through
``torch.load(weights_only=True)``, whose unpickler builds tensors, containers and primitive
types. mmengine training checkpoints (``--resume``, ``load_from``, a fine-tuned
``epoch_10.pth`` given to ``get_model``) also hold numpy arrays and scalars and mmengine's
``HistoryBuffer``; for those, and only inside mmclip's own reads, the unpickler is given:

- numpy's array and scalar rebuild functions, wrapped so that they refuse object arrays;
- a stand-in registered under HistoryBuffer's name that keeps the numbers of a buffer and
  nothing else. The real class's ``__setstate__`` writes a class-level dict of methods that
  a crafted file can steer, so it is never called on file data;
- an inert function under the name ``builtins.getattr`` (HistoryBuffer pickles its methods
  as ``getattr(HistoryBuffer, 'mean')``): it returns None and looks nothing up, so no
  attribute of anything is reachable from a file.

Nothing is added to torch's process-wide allow-list: the names are in force only for the
duration of one ``torch.load`` call, and a name the process had already allowed stays.
The stand-ins become real ``HistoryBuffer`` objects through its constructor, with numbers
only (``restore_training_state``).
"""
import contextlib
import os.path as osp
import pickle
import re
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch

MapLocation = Union[str, torch.device, Callable, dict, None]

HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
# The marker under which mmclip saves a HistoryBuffer as plain data (see to_plain_data).
PLAIN_HISTORY_BUFFER = '__mmclip_history_buffer__'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object that is not plain weights; nothing in it ran."""


class CheckpointReadError(ValueError):
    """A checkpoint file is missing, truncated or not a checkpoint at all."""


# ---- the stand-ins -----------------------------------------------------------------------
class _StatisticsMethodName:
    """What ``getattr(HistoryBuffer, name)`` gives inside a checkpoint: the name, inert."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> None:
        raise pickle.UnpicklingError(f'a checkpoint tried to call HistoryBuffer.{self.name}')


def _inert_getattr(obj: Any, name: Any) -> _StatisticsMethodName:
    """Stands in for ``builtins.getattr`` (see the module docstring): looks nothing up."""
    if obj is not _HistoryBufferRecord or not isinstance(name, str):
        shown = name[:40] if isinstance(name, str) else f'<{type(name).__name__}>'
        raise pickle.UnpicklingError(
            f'getattr(<{type(obj).__name__}>, {shown!r}) is not allowed in a checkpoint '
            f'(only HistoryBuffer statistics names are, and they are never looked up)')
    return _StatisticsMethodName(name)


def _numeric_array(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value) if isinstance(value, (list, tuple)) else value
    if not isinstance(array, np.ndarray) or array.dtype.kind not in 'biuf' or array.ndim != 1:
        raise pickle.UnpicklingError(f'{what} must be a 1-d numeric array')
    return array


class _HistoryBufferRecord:
    """What a pickled mmengine HistoryBuffer holds that is worth keeping: its numbers."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError('HistoryBuffer state must be a dict')
        self.log_history = _numeric_array(state.get('_log_history', []), 'HistoryBuffer log')
        self.count_history = _numeric_array(state.get('_count_history', []),
                                            'HistoryBuffer counts')
        if len(self.log_history) != len(self.count_history):
            raise pickle.UnpicklingError('HistoryBuffer log and counts differ in length')
        max_length = state.get('max_length', 1000000)
        if type(max_length) is not int or max_length < 1:
            raise pickle.UnpicklingError('HistoryBuffer max_length must be a positive int')
        self.max_length = max_length


def _numpy_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for numbers only: an object dtype would let a file build arrays of
    arbitrary objects."""
    dtype = np.dtype(*args)
    if dtype.hasobject or dtype.kind not in 'biufc?':
        raise pickle.UnpicklingError(f'numpy dtype {dtype} is not allowed in a checkpoint')
    return dtype


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError('only plain numpy arrays are allowed in a checkpoint')
    return _multiarray()._reconstruct(subtype, shape, _numpy_dtype(dtype))


def _numpy_scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError('numpy scalars must have a numeric dtype')
    return _multiarray().scalar(dtype, *args)


def _multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    return multiarray


# numpy dtype classes of the numeric scalars and arrays mmengine logs.
_NUMPY_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'


def _training_state_globals() -> list:
    """The names a training checkpoint needs, each bound to a safe object."""
    names = []
    for package in ('numpy.core', 'numpy._core'):  # numpy 1.x / 2.x pickles
        names += [(_numpy_reconstruct, f'{package}.multiarray._reconstruct'),
                  (_numpy_scalar, f'{package}.multiarray.scalar')]
    return names + [
        np.ndarray, (_numpy_dtype, 'numpy.dtype'),
        *[type(np.dtype(code)) for code in _NUMPY_DTYPE_CODES],
        (_HistoryBufferRecord, HISTORY_BUFFER), (_inert_getattr, 'builtins.getattr'),
    ]


@contextlib.contextmanager
def _scoped_safe_globals() -> Iterator[None]:
    """The training-state names, for one load only; names the process already allowed stay
    (torch's context would remove them on exit)."""
    present = set(torch.serialization.get_safe_globals())
    added = [g for g in _training_state_globals() if g not in present]
    with torch.serialization.safe_globals(added):
        yield


# ---- the file ----------------------------------------------------------------------------
def checkpoint_format(path: str) -> Optional[str]:
    """'safetensors', 'torch' (zip or legacy pickle) or None, from the file's first bytes,
    not its name: a ``.pth`` may hold safetensors, and an HTML page is neither."""
    with open(path, 'rb') as f:
        head = f.read(9)
    header_size = int.from_bytes(head[:8], 'little') if len(head) == 9 else 0
    if head[8:9] == b'{' and 0 < header_size < osp.getsize(path):
        return 'safetensors'
    if head[:4] == b'PK\x03\x04' or head[:1] == b'\x80':  # zip archive / pickle PROTO
        return 'torch'
    return None


def read_checkpoint_file(path: str, map_location: MapLocation = 'cpu',
                         mmap: bool = False) -> Any:
    """Load ``path``: safetensors with safetensors, a PyTorch file with
    ``torch.load(weights_only=True)`` (told apart by content, whatever the extension).
    mmengine HistoryBuffers come back as real ones, rebuilt from their numbers.

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
    file_format = checkpoint_format(path)
    if file_format is None:
        raise CheckpointReadError(f'{path} is neither a PyTorch checkpoint (.pth/.pt/.bin) nor '
                                  f'a safetensors file (an HTML error page or a text file?).')
    if file_format == 'safetensors':
        return _read_safetensors(path, map_location)
    try:
        with _scoped_safe_globals():
            if mmap and _mappable(path):
                checkpoint = torch.load(path, map_location=map_location, weights_only=True,
                                        mmap=True)
            else:
                # A file object, not the path: torch 2.14 picks safetensors by extension.
                with open(path, 'rb') as f:
                    checkpoint = torch.load(f, map_location=map_location, weights_only=True)
        return restore_training_state(checkpoint)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(_refusal_message(path, err)) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, TypeError, IndexError,
            AttributeError, MemoryError) as err:
        raise CheckpointReadError(
            f'Cannot read checkpoint {path} with torch.load ({type(err).__name__}: '
            f'{_first_line(err)}); is the file complete?') from None


def _mappable(path: str) -> bool:
    """torch maps only zip-format files, and only by path (read as safetensors when the
    path ends in .safetensors)."""
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04' and not path.endswith('.safetensors')


def _read_safetensors(path: str, map_location: MapLocation) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    device = str(map_location) if isinstance(map_location, (str, torch.device)) else 'cpu'
    try:
        return load_file(path, device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointReadError(f'Cannot read safetensors checkpoint {path}: '
                                  f'{_first_line(err)}') from None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [''])[0]


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


# ---- training state: to plain data and back ----------------------------------------------
def to_plain_data(obj: Any) -> Any:
    """``obj`` with every HistoryBuffer, numpy array and numpy scalar replaced by plain
    data (tensors, Python numbers), so that the saved file needs no allow-list at all."""
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {PLAIN_HISTORY_BUFFER: True, 'log_history': torch.from_numpy(np.array(log)),
                'count_history': torch.from_numpy(np.array(count)),
                'max_length': int(obj.max_length)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) and obj.dtype.kind in 'biufc':
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return type(obj)((k, to_plain_data(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(to_plain_data(v) for v in obj)
    return obj


def _plain_history(record: dict):
    log, count, max_length = (record.get(k) for k in ('log_history', 'count_history',
                                                      'max_length'))
    if not (isinstance(log, torch.Tensor) and isinstance(count, torch.Tensor)
            and type(max_length) is int and max_length > 0):
        raise pickle.UnpicklingError('malformed mmclip HistoryBuffer record')
    log, count = _numeric_array(log.numpy(), 'log_history'), _numeric_array(
        count.numpy(), 'count_history')
    if len(log) != len(count):
        raise pickle.UnpicklingError('mmclip HistoryBuffer log and counts differ in length')
    return log, count, max_length


def restore_training_state(obj: Any) -> Any:
    """Real HistoryBuffers for the stand-ins and for mmclip's plain form; all else as is."""
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, _HistoryBufferRecord):
        return HistoryBuffer(obj.log_history, obj.count_history, obj.max_length)
    if isinstance(obj, dict):
        if obj.get(PLAIN_HISTORY_BUFFER) is True:
            return HistoryBuffer(*_plain_history(obj))
        for key, value in obj.items():
            obj[key] = restore_training_state(value)
        return obj
    if isinstance(obj, list):
        return [restore_training_state(v) for v in obj]
    return obj
