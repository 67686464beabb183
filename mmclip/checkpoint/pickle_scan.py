"""Decide from a pickle's opcode stream, before anything is built, what it may build.

A checkpoint's pickle is a small program: ``GLOBAL`` names a Python object (any importable
function or class) and ``REDUCE`` / ``BUILD`` / ``NEWOBJ`` call it or set its state. torch's
``weights_only`` unpickler decides which names to accept from a process-wide allow-list
that torch itself and every library in the process may extend (importing
``torch.distributed`` adds classes to it), so it cannot be mmclip's guarantee. This module
reads the opcodes first and refuses every name outside ``ADMITTED_GLOBALS``, mmclip's own
fixed list: what ``torch.save`` of a state dict, an optimizer and scheduler state and plain
metadata writes, and nothing else.

One exception, never built either: mmengine's training checkpoints log their statistics as
numpy arrays and ``HistoryBuffer`` objects (``STATISTICS_GLOBALS``). ``scan`` rewrites each
such object in the opcode stream into plain data that leads with the string ``DROPPED``
(``is_dropped``), so that the unpickler sees only admitted names and calls none of these;
``safe_load`` then drops those entries with a warning (or refuses the file if one sits
outside the message hub).
"""
import io
import pickletools
import struct
from typing import Iterator, List, NamedTuple, Optional, Tuple

# Rebuilders of plain tensors and parameters, the storage types named in their persistent
# ids (``torch.cuda.*`` in files saved from a GPU by the legacy format), and OrderedDict
# (``state_dict()`` returns one). Deliberately absent though torch admits them:
# ``_rebuild_parameter_with_state`` (sets arbitrary attributes), the sparse, quantized,
# nested, meta and wrapper-subclass rebuilders, ``_rebuild_from_type_v2`` (calls a
# function named in the file), numpy, ``builtins.*`` (``bytearray``, ``set``, ``getattr``),
# ``_codecs.encode``, ``torch.Size`` and the dtype objects: no state dict needs them.
_STORAGE_TYPES = ('Float', 'Double', 'Half', 'BFloat16', 'Long', 'Int', 'Short', 'Char',
                  'Byte', 'Bool', 'ComplexFloat', 'ComplexDouble')
ADMITTED_GLOBALS = frozenset([
    'torch._utils._rebuild_tensor_v2',
    'torch._utils._rebuild_parameter',
    'collections.OrderedDict',
    *(f'torch.{kind}Storage' for kind in _STORAGE_TYPES),
    *(f'torch.cuda.{kind}Storage' for kind in _STORAGE_TYPES),
])

# What mmengine's MessageHub pickles for its logged scalars (numpy 1.x and 2.x names;
# pickle protocol 2 writes an array's raw bytes through ``_codecs.encode`` and names
# builtins as Python 2's ``__builtin__``).
STATISTICS_GLOBALS = frozenset([
    'mmengine.logging.history_buffer.HistoryBuffer', '__builtin__.getattr', '_codecs.encode',
    'numpy.ndarray', 'numpy.dtype',
    *(f'{package}.multiarray.{name}' for package in ('numpy.core', 'numpy._core')
      for name in ('_reconstruct', 'scalar')),
])
STATISTICS_MODULE_PREFIX = 'numpy.dtypes.'  # numpy 2's dtype classes, e.g. Float64DType

DROPPED = '\x00mmclip:dropped'  # what a statistics object becomes; no file string starts so

_MARK = object()  # a MARK on the simulated stack
_CALLS = {'REDUCE': 2, 'NEWOBJ': 2, 'NEWOBJ_EX': 3}  # op -> stack items consumed
_TUPLE_OF = {2: b'\x86', 3: b'\x87'}  # TUPLE2, TUPLE3
_REFUSED_OPS = {'INST', 'OBJ', 'EXT1', 'EXT2', 'EXT4'}  # never written by torch.save


class PickleRefusal(Exception):
    """The opcode stream names something outside the admitted list; nothing was built."""


class MalformedPickle(ValueError):
    """The bytes are not a well-formed pickle (a truncated or corrupt file)."""


class _Value(NamedTuple):
    text: Optional[str] = None  # the value of a pushed string (STACK_GLOBAL reads these)
    dropped: bool = False  # a statistics object, rewritten into DROPPED


_PLAIN, _DROPPED_VALUE = _Value(), _Value(dropped=True)  # shared: a stack of refs stays small


class Scan(NamedTuple):
    dropped_globals: Tuple[str, ...]  # statistics names found (sorted), empty for plain files
    rewritten: Optional[bytes]  # the stream with them neutralized, None where none was found


def is_statistics_global(name: str) -> bool:
    return name in STATISTICS_GLOBALS or name.startswith(STATISTICS_MODULE_PREFIX)


def is_dropped(value: object) -> bool:
    """What a statistics object became: ``DROPPED``, or a tuple that leads with one."""
    while isinstance(value, tuple) and value:
        value = value[0]
    return isinstance(value, str) and value == DROPPED


def _push_dropped() -> bytes:
    encoded = DROPPED.encode()
    return b'X' + struct.pack('<I', len(encoded)) + encoded  # BINUNICODE


class _Machine:
    """Follows the stack and memo of an opcode stream far enough to know, for every call
    and BUILD, whether its target is a dropped statistics object, and writes the stream
    back with those rewritten (a statistics GLOBAL pushes ``DROPPED``; a call or BUILD of
    one packs its operands into a tuple instead)."""

    def __init__(self) -> None:
        self.stack: list = []
        self.memo: dict = {}
        self.out: List[bytes] = []
        self.dropped: set = set()

    def pop(self, count: int) -> list:
        items = self.stack[len(self.stack) - count:]
        if count > len(self.stack) or any(v is _MARK for v in items):
            raise MalformedPickle('stack underflow')
        del self.stack[len(self.stack) - count:]
        return items

    def pop_to_mark(self) -> list:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1:]
                del self.stack[i:]
                return items
        raise MalformedPickle('no MARK')

    def global_value(self, name: str) -> _Value:
        if name in ADMITTED_GLOBALS:
            return _PLAIN
        if is_statistics_global(name):
            self.dropped.add(name)
            return _DROPPED_VALUE
        raise PickleRefusal(f'it references {name}')

    def step(self, op: pickletools.OpcodeInfo, arg, raw: bytes) -> None:
        name = op.name
        if name in _REFUSED_OPS:
            raise PickleRefusal(f'it uses the {name} opcode')
        if name == 'FRAME':  # a read-ahead hint only; the rewritten stream has no frames
            return
        if name in ('GLOBAL', 'STACK_GLOBAL'):
            if name == 'GLOBAL':
                module, _, attr = arg.partition(' ')
            else:
                module, attr = (v.text for v in self.pop(2))
                if module is None or attr is None:
                    raise PickleRefusal('it names a global through a computed string')
            value = self.global_value(f'{module}.{attr}')
            if value.dropped and name == 'STACK_GLOBAL':
                raise PickleRefusal(f'it references {module}.{attr}')  # not torch.save's
            self.stack.append(value)
            self.out.append(_push_dropped() if value.dropped else raw)
            return
        if name in _CALLS or name == 'BUILD':
            consumed = self.pop(_CALLS.get(name, 2))
            target = consumed[0]
            self.stack.append(target if target.dropped else _PLAIN)
            # torch's unpickler has no POP: the dropped object becomes the tuple of what
            # it was to be built from, which leads with a DROPPED marker
            self.out.append(_TUPLE_OF[len(consumed)] if target.dropped else raw)
            return
        self.out.append(raw)
        self._generic(op, arg)

    def _generic(self, op: pickletools.OpcodeInfo, arg) -> None:
        name = op.name
        if name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
            self.memo[arg] = self._top()
        elif name == 'MEMOIZE':
            self.memo[len(self.memo)] = self._top()
        elif name in ('GET', 'BINGET', 'LONG_BINGET'):
            if arg not in self.memo:
                raise MalformedPickle('memo key not found')
            self.stack.append(self.memo[arg])
        elif name == 'DUP':
            self.stack.append(self._top())
        elif name == 'MARK':
            self.stack.append(_MARK)
        else:
            before = op.stack_before
            if pickletools.markobject in before:
                self.pop_to_mark()
                self.pop(before.index(pickletools.markobject))
            else:
                self.pop(len(before))
            is_text = isinstance(arg, str) and ('UNICODE' in name or 'STRING' in name)
            value = _Value(text=arg) if is_text else _PLAIN
            self.stack.extend(value for _ in op.stack_after)

    def _top(self) -> _Value:
        if not self.stack or self.stack[-1] is _MARK:
            raise MalformedPickle('nothing to memoize')
        return self.stack[-1]


def _ops(stream: io.BytesIO) -> Iterator[Tuple[pickletools.OpcodeInfo, object, bytes]]:
    """(opcode, argument, raw bytes) of one pickle, up to and including its STOP."""
    data = stream.getbuffer()
    previous = None
    for op, arg, pos in pickletools.genops(stream):
        if previous is not None:
            yield previous[0], previous[1], bytes(data[previous[2]:pos])
        previous = (op, arg, pos)
    if previous is not None:
        yield previous[0], previous[1], bytes(data[previous[2]:stream.tell()])


def scan(stream: io.BytesIO) -> Scan:
    """Scan one pickle from ``stream``'s position (left after its STOP).

    Raises:
        PickleRefusal: a name outside the admitted list or an opcode torch.save never
            writes; the message says which (for one line).
        MalformedPickle: a stream that does not parse.
    """
    machine = _Machine()
    try:
        for op, arg, raw in _ops(stream):
            machine.step(op, arg, raw)
    except (PickleRefusal, MalformedPickle):
        raise
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as err:
        raise MalformedPickle(str(err)) from None
    if not machine.dropped:
        return Scan((), None)
    return Scan(tuple(sorted(machine.dropped)), b''.join(machine.out))
