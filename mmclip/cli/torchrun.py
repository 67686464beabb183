"""torchrun for the tools (``tools/dist_launch.sh``): the same launcher, but a failed run
ends with the failing rank's own one ``ERROR`` line instead of the launcher's 30-line
``ChildFailedError`` traceback and its per-process log lines.

A rank that stops on a user error has printed its ``ERROR: ...`` line and exits 1; the
launcher then adds nothing. A rank that died without a word (killed by a signal, e.g.
by the kernel for lack of memory, or a crash) gets one line here naming the rank and how
it ended. Ctrl-C ends the launcher quietly with 130 (rank 0 prints the one line).
``MMCLIP_DEBUG=1`` keeps torchrun's own output.

    python -m mmclip.cli.torchrun [torchrun options] SCRIPT [script arguments]
"""
import logging
import os
import signal
import sys
from typing import List, Optional

from mmclip.cli.launch import DEBUG_ENV, INTERRUPTED_EXIT_CODE, report_error

# The exit code of a rank that reported its own error (``exit_code_of``).
REPORTED_EXIT_CODE = 1


def _failure_line(rank: int, exitcode: int) -> Optional[str]:
    """What to say about the first failed rank; None when it has said it itself."""
    if exitcode == REPORTED_EXIT_CODE:
        return None
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else ''
        hint = ' (SIGKILL: often the kernel, for lack of memory)' if name == 'SIGKILL' else ''
        return f'rank {rank} was stopped by signal {-exitcode} {name}{hint}.'
    return f'rank {rank} exited with code {exitcode}.'


def main(argv: Optional[List[str]] = None) -> int:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(argv)
    if os.environ.get(DEBUG_ENV) == '1':
        torchrun.run(args)
        return 0
    # Its per-process lines ('failed (exitcode: 1) local_rank: ...', 'Sending process ...
    # closing signal SIGTERM') repeat what the failing rank said.
    # ('Received 2 death signal, shutting down workers' on Ctrl-C.) Each elastic module's
    # logger has its own level, so each is set.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith('torch.distributed.elastic'):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun.run(args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        line = _failure_line(rank, failure.exitcode)
        if line:
            report_error(line)
        return (failure.exitcode if failure.exitcode > 0 else 1)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT_CODE
    except SignalException as err:  # SIGINT / SIGTERM to the launcher: 128 + its number
        return 128 + int(err.sigval)
    return 0


if __name__ == '__main__':
    sys.exit(main())
