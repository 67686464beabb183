"""Read checkpoint files as data: tensors and plain Python values, nothing else is built.

``.safetensors`` files hold tensors only and are read with safetensors. A PyTorch file
(zip or legacy format) is read in three steps:

1. **Before anything is built**, its pickle's opcodes are scanned (``pickle_scan``): any
   name outside mmclip's fixed list (tensor and storage rebuilders, ``OrderedDict``) is
   refused, whatever torch or another library has added to torch's process-wide
   allow-list. Zip entries must be stored uncompressed (as ``torch.save`` writes them) and
   the pickle at most ``MAX_PICKLE_BYTES``.
2. ``torch.load(weights_only=True)`` reads it; mmclip adds nothing to any allow-list.
3. **Before any use**, the result is checked (``check_plain_data``): containers of
   ``str`` / ``int`` / ``float`` / ``bool`` / ``None`` / tensors only, nested at most
   ``MAX_DEPTH`` deep; every tensor dense (no zero or negative strides, no more elements
   than its storage holds) and all storages together no larger than the file.

mmclip's training checkpoints keep the message hub as plain data (``to_plain_data``) and
come back with real ``HistoryBuffer`` objects, built through its constructor from numbers.
A checkpoint written by plain mmengine logs its statistics as numpy arrays and
HistoryBuffers: those are never built. They become a marker in the opcode stream, and
their message-hub entries are dropped with one warning naming them (the weights, optimizer
and scheduler state load as saved); such an object anywhere else refuses the file.
"""
import collections
import io
import logging
import os
import os.path as osp
import zipfile
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log

from . import pickle_scan

MapLocation = Union[str, torch.device, Callable, dict, None]

# The marker under which mmclip saves a HistoryBuffer as plain data (see to_plain_data).
PLAIN_HISTORY_BUFFER = '__mmclip_history_buffer__'
# A state dict's pickle is kilobytes (H/14 with optimizer state: ~0.3 MB); the opcode scan
# and the unpickler hold one small reference per stack item, so this bounds their memory.
MAX_PICKLE_BYTES = 16 << 20
MAX_DEPTH = 16  # an mmengine training checkpoint nests 6 deep
_LEGACY_PICKLES = 5  # magic number, protocol, system info, the object, storage keys


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds something other than tensors and plain data; nothing in it ran."""


class CheckpointReadError(ValueError):
    """A checkpoint file is missing, truncated or not a checkpoint at all."""


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
                         mmap: bool = False, name: Optional[str] = None) -> Any:
    """Load ``path`` as data (see the module docstring): safetensors with safetensors, a
    PyTorch file with ``torch.load(weights_only=True)`` after its opcodes were scanned.

    ``mmap=True`` memory-maps a zip-format PyTorch file (safetensors files always are):
    for weights that are copied into a model and dropped, the file's pages stay in the
    page cache instead of a second full copy in process memory (2.4 GB for ViT-H/14).
    ``name`` is how messages call the file (default ``path``; the loader reads a verified
    file through its ``/proc/self/fd`` alias and names the file).

    Raises:
        CheckpointReadError: missing, truncated or unreadable file (naming it).
        UnsafeCheckpointError: anything but tensors and plain data, naming the file and
            the global or key path; nothing in it was built.
    """
    try:
        return _read(path, map_location, mmap, name or path)
    except (CheckpointReadError, UnsafeCheckpointError) as err:
        if name is None or name == path:
            raise
        raise type(err)(str(err).replace(path, name)) from None


def _read(path: str, map_location: MapLocation, mmap: bool, name: str) -> Any:
    if not osp.isfile(path):
        raise CheckpointReadError(f'Checkpoint file {path} does not exist.')
    file_format = checkpoint_format(path)
    if file_format is None:
        raise CheckpointReadError(f'{path} is neither a PyTorch checkpoint (.pth/.pt/.bin) nor '
                                  f'a safetensors file (an HTML error page or a text file?).')
    if file_format == 'safetensors':
        return check_plain_data(_read_safetensors(path, map_location), path)
    is_zip = zipfile.is_zipfile(path)
    scanned = scan_checkpoint(path, is_zip)
    checkpoint = _torch_load(path, scanned, map_location, mmap and is_zip)
    if scanned.dropped_globals:
        checkpoint = _drop_statistics(checkpoint, path, scanned.dropped_globals, name)
    checkpoint = check_plain_data(checkpoint, path)
    return restore_training_state(checkpoint, path)


def _refusal(path: str, detail: str) -> str:
    return (f'Refusing to load {path}: {detail}, which is not plain weights. mmclip never '
            f'executes pickled code and builds only tensors and plain data from a checkpoint '
            f'(docs/safety.md). If you trust the file, re-save only its tensors '
            f'(torch.save(model.state_dict(), ...) or safetensors) and load that instead.')


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [''])[0]


def _read_safetensors(path: str, map_location: MapLocation) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    device = str(map_location) if isinstance(map_location, (str, torch.device)) else 'cpu'
    try:
        return load_file(path, device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointReadError(f'Cannot read safetensors checkpoint {path}: '
                                  f'{_first_line(err)}') from None


# ---- step 1: the opcode scan ---------------------------------------------------------------
def scan_checkpoint(path: str, is_zip: Optional[bool] = None) -> pickle_scan.Scan:
    """Step 1 for a PyTorch file (zip or legacy format; ``is_zip`` when the caller has
    already looked).

    Raises:
        UnsafeCheckpointError: a name or opcode outside mmclip's list, naming the file.
        CheckpointReadError: not a well-formed zip or pickle.
    """
    try:
        if is_zip is None:
            is_zip = zipfile.is_zipfile(path)
        return _scan_zip(path) if is_zip else _scan_legacy(path)
    except pickle_scan.PickleRefusal as err:
        raise UnsafeCheckpointError(_refusal(path, str(err))) from None
    except pickle_scan.MalformedPickle as err:
        raise CheckpointReadError(f'Cannot read checkpoint {path}: not a well-formed pickle '
                                  f'({_first_line(err)}); is the file complete?') from None


def _zip_pickle(path: str, archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The one ``*/data.pkl`` entry, after checking that no entry is compressed (a
    deflated entry could inflate a thousandfold) and that the pickle is small."""
    compressed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise CheckpointReadError(f'{path}: entry {compressed[0]} is compressed; torch.save '
                                  f'stores every entry uncompressed.')
    pickles = [i for i in archive.infolist() if i.filename.endswith('data.pkl')
               and i.filename.count('/') == 1]
    if len(pickles) != 1:
        raise CheckpointReadError(f'{path} is a zip file without one */data.pkl; not a '
                                  f'PyTorch checkpoint.')
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise UnsafeCheckpointError(_refusal(
            path, f'its pickle claims {pickles[0].file_size} bytes (at most '
                  f'{MAX_PICKLE_BYTES} for a checkpoint)'))
    return pickles[0]


def _scan_zip(path: str) -> pickle_scan.Scan:
    try:
        with zipfile.ZipFile(path) as archive:
            return pickle_scan.scan(io.BytesIO(archive.read(_zip_pickle(path, archive))))
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointReadError(f'Cannot read checkpoint {path} ({_first_line(err)}); is '
                                  f'the file complete?') from None


def _scan_legacy(path: str) -> pickle_scan.Scan:
    """The legacy format is five pickles back to back, then raw storage bytes."""
    with open(path, 'rb') as f:
        stream = io.BytesIO(f.read(MAX_PICKLE_BYTES))
    for _ in range(_LEGACY_PICKLES):
        scanned = pickle_scan.scan(stream)
        if scanned.dropped_globals:  # written before mmengine existed: nothing to keep
            raise pickle_scan.PickleRefusal(
                f'it references {", ".join(scanned.dropped_globals)}')
    return scanned


# ---- step 2: torch.load ---------------------------------------------------------------------
def _torch_load(path: str, scanned: pickle_scan.Scan, map_location: MapLocation,
                mmap: bool) -> Any:
    try:
        if scanned.rewritten is not None:
            with open(path, 'rb') as f:
                return torch.load(_with_pickle(f, scanned.rewritten), map_location=map_location,
                                  weights_only=True)
        if mmap and not path.endswith('.safetensors'):  # torch picks a reader by suffix
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        with open(path, 'rb') as f:  # a file object: torch 2.14 reads safetensors by name
            return torch.load(f, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, TypeError, IndexError,
            AttributeError, MemoryError, zipfile.BadZipFile) as err:
        raise CheckpointReadError(
            f'Cannot read checkpoint {path} with torch.load ({type(err).__name__}: '
            f'{_first_line(err)}); is the file complete?') from None


class _AppendedZip(io.RawIOBase):
    """A read-only file ``f`` whose bytes from the first write on are replaced by what is
    written: zipfile's append mode writes a new entry over the central directory and then
    a new directory, so the original file is never touched and nothing is copied."""

    def __init__(self, f) -> None:
        super().__init__()
        self.base, self.size = f, os.fstat(f.fileno()).st_size
        self.cut: Optional[int] = None
        self.tail = bytearray()
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def _end(self) -> int:
        return self.size if self.cut is None else self.cut + len(self.tail)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset + (0, self.pos, self._end())[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast('B')
        done = 0
        while done < len(view) and self.pos < self._end():
            if self.cut is None or self.pos < self.cut:
                stop = self.size if self.cut is None else self.cut
                self.base.seek(self.pos)
                chunk = self.base.read(min(len(view) - done, stop - self.pos))
            else:
                start = self.pos - self.cut
                chunk = self.tail[start:start + len(view) - done]
            if not chunk:
                break
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done

    def write(self, data) -> int:
        if self.cut is None:
            self.cut = self.pos
        start = self.pos - self.cut
        if start < 0:
            raise OSError('writes go after the central directory only')
        self.tail[start:start + len(data)] = data
        self.pos += len(data)
        return len(data)

    def truncate(self, size: Optional[int] = None) -> int:
        size = self.pos if size is None else size
        if self.cut is not None:
            del self.tail[max(size - self.cut, 0):]
        return size


def _with_pickle(f, pickle_bytes: bytes) -> io.BufferedReader:
    """The zip file ``f`` as torch should read it: its ``data.pkl`` replaced (in memory)
    by ``pickle_bytes``."""
    view = _AppendedZip(f)
    with zipfile.ZipFile(view, 'a') as archive:
        old = _zip_pickle(f.name, archive)
        archive.filelist.remove(old)
        del archive.NameToInfo[old.filename]
        archive.writestr(zipfile.ZipInfo(old.filename), pickle_bytes)
    view.seek(0)
    return io.BufferedReader(view)


# ---- step 3: what was built is plain data ---------------------------------------------------
_SCALARS = (str, int, float, bool, type(None))
_CONTAINERS = (dict, collections.OrderedDict, list, tuple)


def _dense(tensor: torch.Tensor) -> bool:
    """Strides of a non-overlapping, gap-free layout (any dimension order): no stride-0
    broadcast claiming elements the storage does not hold."""
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _check_tensor(tensor: torch.Tensor, where: str, path: str) -> None:
    storage = tensor.untyped_storage()
    needed = (tensor.storage_offset() + tensor.numel()) * tensor.element_size()
    if tensor.layout != torch.strided or not _dense(tensor) or needed > storage.nbytes():
        raise UnsafeCheckpointError(_refusal(
            path, f'{where} is a {tuple(tensor.shape)} tensor with strides '
                  f'{tuple(tensor.stride())} over a {storage.nbytes()}-byte storage (not a dense '
                  f'tensor)'))


def _key_path(parts: Tuple) -> str:
    return '.'.join(str(p) for p in parts) or '<top level>'


def _items(value: Any) -> Iterator[Tuple[Any, Any]]:
    """(key, item) of a container: dict keys, list / tuple indices."""
    return iter(value.items()) if isinstance(value, dict) else enumerate(value)


def _walk(obj: Any, path: str) -> Iterator[Tuple[Any, Tuple]]:
    """Every tensor and container in ``obj`` once (shared children are visited once, so
    the work is bounded by the pickle's size however the file nests them), with its key
    path; refuses anything else that is not a scalar, and nesting past ``MAX_DEPTH``."""
    seen = set()
    todo: List[Tuple[Any, Tuple]] = [(obj, ())]
    while todo:
        value, where = todo.pop()
        if isinstance(value, _SCALARS) or id(value) in seen:
            continue
        seen.add(id(value))
        if len(where) > MAX_DEPTH:
            raise UnsafeCheckpointError(_refusal(
                path, f'{_key_path(where[:MAX_DEPTH])} nests deeper than {MAX_DEPTH} levels'))
        if type(value) not in _CONTAINERS and not isinstance(value, torch.Tensor):
            raise UnsafeCheckpointError(_refusal(
                path, f'{_key_path(where)} is a {type(value).__name__}'))
        yield value, where
        if isinstance(value, torch.Tensor):
            continue
        for key, item in _items(value):
            if not isinstance(key, (str, int)):
                raise UnsafeCheckpointError(_refusal(
                    path, f'{_key_path(where)} has a {type(key).__name__} key'))
            todo.append((item, where + (key, )))


def check_plain_data(obj: Any, path: str) -> Any:
    """``obj`` (as loaded from ``path``), refused unless it is plain data (module
    docstring, step 3).

    Raises:
        UnsafeCheckpointError: naming the file and the key path.
    """
    storages = {}
    for value, where in _walk(obj, path):
        if isinstance(value, torch.Tensor):
            _check_tensor(value, _key_path(where), path)
            storage = value.untyped_storage()
            storages[storage.data_ptr(), str(storage.device)] = storage.nbytes()
    total, size = sum(storages.values()), osp.getsize(path)
    if total > size:
        raise UnsafeCheckpointError(_refusal(
            path, f'its tensors claim {total} bytes of storage, more than the file\'s {size}'))
    return obj


def _dropped_paths(obj: Any) -> List[Tuple]:
    """Key paths of the statistics objects that the scan rewrote (``is_dropped``); each
    container is visited once, and none below a dropped value."""
    found, seen = [], set()
    todo: List[Tuple[Any, Tuple]] = [(obj, ())]
    while todo:
        value, where = todo.pop()
        if pickle_scan.is_dropped(value):
            found.append(where)
        elif isinstance(value, (dict, list, tuple)) and id(value) not in seen:
            seen.add(id(value))
            todo.extend((item, where + (key, )) for key, item in _items(value))
    return found


def _drop_statistics(checkpoint: Any, path: str, names: Tuple[str, ...], file_name: str) -> Any:
    """Remove the message-hub entries (``message_hub.<section>.<name>``) that held numpy
    or HistoryBuffer objects; refuse the file if such an object sits anywhere else."""
    dropped = sorted(set(p[:3] for p in _dropped_paths(checkpoint)), key=str)
    outside = [p for p in dropped if len(p) < 3 or p[0] != 'message_hub'
               or not isinstance(checkpoint['message_hub'].get(p[1]), dict)]
    if outside:
        raise UnsafeCheckpointError(_refusal(
            path, f'{_key_path(outside[0])} holds {" / ".join(names)} objects (mmclip builds '
                  f'them only as logging statistics of an mmengine message hub)'))
    for _, section, name in dropped:
        checkpoint['message_hub'][section].pop(name, None)
    shown = ', '.join(_key_path(p) for p in dropped[:5])
    print_log(f'{file_name}: dropped {len(dropped)} logging statistics that mmengine saved as '
              f'numpy / HistoryBuffer objects, which mmclip never builds ({shown}'
              f'{", ..." if len(dropped) > 5 else ""}); weights, optimizer and scheduler '
              f'state load as saved.', logger='current', level=logging.WARNING)
    return checkpoint


# ---- training state: to plain data and back ----------------------------------------------
def to_plain_data(obj: Any) -> Any:
    """``obj`` with every HistoryBuffer, numpy array and numpy scalar replaced by plain
    data (tensors, Python numbers), so that the saved file is plain data throughout."""
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


def _history_numbers(record: dict, path: str) -> Tuple[np.ndarray, np.ndarray, int]:
    log, count, max_length = (record.get(k) for k in ('log_history', 'count_history',
                                                      'max_length'))
    if not (isinstance(log, torch.Tensor) and isinstance(count, torch.Tensor)
            and log.ndim == 1 and count.ndim == 1 and len(log) == len(count)
            and not log.is_complex() and not count.is_complex()
            and type(max_length) is int and max_length > 0):
        raise UnsafeCheckpointError(_refusal(path, 'a malformed HistoryBuffer record'))
    return log.numpy(), count.numpy(), max_length


def restore_training_state(obj: Any, path: str = 'checkpoint') -> Any:
    """Real HistoryBuffers for mmclip's plain records (built from their numbers by
    HistoryBuffer's constructor); everything else as is. Runs after ``check_plain_data``,
    so the records hold dense tensors."""
    from mmengine.logging import HistoryBuffer

    def restored(value: Any) -> Any:
        if isinstance(value, dict) and value.get(PLAIN_HISTORY_BUFFER) is True:
            return HistoryBuffer(*_history_numbers(value, path))
        return value

    for value, _ in list(_walk(obj, path)):
        if isinstance(value, (dict, list)):
            for key, item in list(_items(value)):
                value[key] = restored(item)
    return restored(obj)
