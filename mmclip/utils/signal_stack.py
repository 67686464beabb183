"""Keep the calling thread's alternate signal stack across a foreign library's call.

OpenVINO's CPU plugin (2026.4) points the thread that creates it at an alternate signal
stack of its own (``mmap``) and unmaps that stack when the plugin is destroyed, putting back
the stack it found. Two plugins released in the order they were made leave the thread on the
first one's unmapped stack, and the next signal handled on it (Ctrl-C's SIGINT, the SIGCHLD
handler of a torch DataLoader) ends the process in SIGSEGV. Putting the thread's own stack
back right after the plugin is made means the plugin's stack is never in use when it goes.
"""
import ctypes
import sys
from contextlib import contextmanager
from typing import Iterator, Optional


class StackT(ctypes.Structure):
    """``stack_t`` of <signal.h> on Linux."""
    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int),
                ('ss_size', ctypes.c_size_t)]


def _sigaltstack():
    if not sys.platform.startswith('linux'):
        return None
    return ctypes.CDLL(None, use_errno=True).sigaltstack


def current_signal_stack() -> Optional[StackT]:
    """This thread's alternate signal stack, or None where it cannot be read (not Linux)."""
    sigaltstack = _sigaltstack()
    stack = StackT()
    if sigaltstack is None or sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack


def _fields(stack: StackT) -> tuple:
    return stack.ss_sp, stack.ss_flags, stack.ss_size


@contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Run the block, then give this thread back the alternate signal stack it had before
    (Linux; elsewhere this does nothing)."""
    before = current_signal_stack()
    try:
        yield
    finally:
        now = current_signal_stack()
        if before is not None and _fields(now) != _fields(before):
            _sigaltstack()(ctypes.byref(before), None)
