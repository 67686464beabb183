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
from typing import Callable, Iterator, List, NamedTuple, Optional, Tuple

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

# Never written by torch.save (pickle protocol 2) and not read by torch's weights_only
# unpickler; STACK_GLOBAL would name its global through computed strings.
_REFUSED_OPS = frozenset({'INST', 'OBJ', 'EXT1', 'EXT2', 'EXT4', 'STACK_GLOBAL'})
_CALLS = {'REDUCE': 2, 'NEWOBJ': 2, 'NEWOBJ_EX': 3, 'BUILD': 2}  # op -> operands consumed
_TUPLE_OF = {2: b'\x86', 3: b'\x87'}  # TUPLE2, TUPLE3
_MARK = None  # a MARK on the simulated stack; other items are True for a dropped object


class PickleRefusal(Exception):
    """The opcode stream names something outside the admitted list; nothing was built."""


class MalformedPickle(ValueError):
    """The bytes are not a well-formed pickle (a truncated or corrupt file)."""


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


def scan(stream: io.BytesIO) -> Scan:
    """Scan one pickle from ``stream``'s position (left after its STOP). A plain state
    dict takes one pass over the opcodes; only a file with statistics objects takes a
    second, which rewrites them.

    Raises:
        PickleRefusal: a name outside both lists or an opcode torch.save never writes;
            the message says which (for one line).
        MalformedPickle: a stream that does not parse.
    """
    start = stream.tell()
    try:
        dropped = _statistics_globals(stream)
        if not dropped:
            return Scan((), None)
        stream.seek(start)
        return Scan(tuple(sorted(dropped)), _rewrite(stream))
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as err:
        if isinstance(err, MalformedPickle):
            raise
        raise MalformedPickle(str(err)) from None


def _statistics_globals(stream: io.BytesIO) -> set:
    """The statistics globals of the stream; refuses any other name outside the list.
    Walks the opcodes with ``_SKIP``, without decoding their arguments: a state dict's
    pickle is thousands of opcodes, and the walk is a few percent of the whole load."""
    data, pos, found = stream.getbuffer(), stream.tell(), set()
    while True:
        if pos >= len(data):
            raise MalformedPickle('the pickle ends before its STOP')
        code = data[pos]
        name, skip = _SKIP.get(code, (None, None))
        if name is None:
            raise MalformedPickle(f'unknown opcode {code:#04x} at byte {pos}')
        if name in _REFUSED_OPS:
            raise PickleRefusal(_refused_op_message(name))
        end = skip(data, pos + 1)
        if name == 'GLOBAL':
            qualified = bytes(data[pos + 1:end - 1]).decode('utf-8').replace('\n', '.', 1)
            if is_statistics_global(qualified):
                found.add(qualified)
            elif qualified not in ADMITTED_GLOBALS:
                raise PickleRefusal(f'it references {qualified}')
        pos = end
        if name == 'STOP':
            stream.seek(pos)
            return found


def _refused_op_message(name: str) -> str:
    if name == 'STACK_GLOBAL':
        return ('it uses the STACK_GLOBAL opcode (pickle protocol 4 or later; torch.save '
                'writes protocol 2)')
    return f'it uses the {name} opcode'


def _line_end(data: memoryview, start: int, lines: int = 1) -> int:
    for _ in range(lines):
        newline = bytes(data[start:start + 65536]).find(b'\n')
        if newline < 0:
            raise MalformedPickle('an opcode argument has no end of line')
        start += newline + 1
    return start


def _skipper(op: pickletools.OpcodeInfo) -> Callable[[memoryview, int], int]:
    """A function from the position after ``op``'s code to the position after its
    argument, built from pickletools' description of the argument."""
    n = op.arg.n if op.arg is not None else 0
    if n >= 0:
        return lambda data, start: start + n
    if n == pickletools.UP_TO_NEWLINE:
        lines = 2 if op.name in ('GLOBAL', 'INST') else 1
        return lambda data, start: _line_end(data, start, lines)
    width, signed = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
                     pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                     pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
                     pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}[n]

    def skip(data: memoryview, start: int) -> int:
        length = int.from_bytes(data[start:start + width], 'little', signed=signed)
        if length < 0 or start + width + length > len(data):
            raise MalformedPickle(f'{op.name} claims {length} bytes past the end')
        return start + width + length
    return skip


_SKIP = {ord(op.code.encode('latin-1')): (op.name, _skipper(op)) for op in pickletools.opcodes}


def _rewrite(stream: io.BytesIO) -> bytes:
    """The stream with each statistics object made plain data: its GLOBAL pushes
    ``DROPPED``, and a call or BUILD of a dropped object packs its operands into a tuple
    (torch's unpickler has no POP). Follows the stack and memo just far enough to know
    which operands are dropped objects; FRAME hints are left out."""
    stack: list = []
    memo: dict = {}
    out: List[bytes] = []
    encoded = DROPPED.encode()
    push_dropped = b'X' + struct.pack('<I', len(encoded)) + encoded  # BINUNICODE
    for op, arg, raw in _ops(stream):
        name = op.name
        if name == 'GLOBAL':
            dropped = is_statistics_global(arg.replace(' ', '.', 1))
            stack.append(dropped)
            out.append(push_dropped if dropped else raw)
        elif name in _CALLS:
            operands = _pop(stack, _CALLS[name])
            stack.append(operands[0])
            out.append(_TUPLE_OF[len(operands)] if operands[0] else raw)
        elif name != 'FRAME':
            out.append(raw)
            _follow(op, arg, stack, memo)
    return b''.join(out)


def _follow(op: pickletools.OpcodeInfo, arg, stack: list, memo: dict) -> None:
    """The stack effect of any other opcode, from pickletools' description of it."""
    name = op.name
    if name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
        if not stack or stack[-1] is _MARK:
            raise MalformedPickle('nothing to memoize')
        memo[len(memo) if name == 'MEMOIZE' else arg] = stack[-1]
    elif name in ('GET', 'BINGET', 'LONG_BINGET'):
        if arg not in memo:
            raise MalformedPickle('memo key not found')
        stack.append(memo[arg])
    elif name == 'DUP':
        stack.extend(_pop(stack, 1) * 2)
    else:
        before = op.stack_before
        if pickletools.markobject in before:
            _pop_to_mark(stack)
            before = before[:before.index(pickletools.markobject)]
        _pop(stack, len(before))
        stack.extend(_MARK if item is pickletools.markobject else False
                     for item in op.stack_after)


def _pop(stack: list, count: int) -> list:
    items = stack[len(stack) - count:]
    if count > len(stack) or _MARK in items:
        raise MalformedPickle('stack underflow')
    del stack[len(stack) - count:]
    return items


def _pop_to_mark(stack: list) -> None:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            del stack[i:]
            return
    raise MalformedPickle('no MARK')


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
