"""Command-line plumbing shared by the tools (tools/*.py, demo/image_demo.py).

- One error path: ``exit_code_of`` turns a user error (``USER_ERRORS``: a bad argument,
  file, image, dataset or checkpoint) into one ``ERROR`` line and exit code 1; ``--debug``
  or ``MMCLIP_DEBUG=1`` shows the traceback instead.
- One help style (``HelpFormatter``: every option shows its default) and one meaning of
  ``--amp`` / ``--precision`` (``add_precision_options``, ``chosen_precision``).
- The options tools/train.py and tools/test.py share (``apply_common_args``:
  ``--cfg-options``, ``--work-dir``, ``--data-root``, worker count capped at the machine's
  cores). Configs come from a file or a zoo name through ``mmclip.apis.model_zoo.resolve_config``.
- Distributed set-up: mmengine 0.10.7 assumes CUDA for ``--launcher pytorch`` (its
  launcher calls ``torch.cuda.set_device`` and its DDP wrapper passes
  ``device_ids=[LOCAL_RANK]``, both of which fail on a CPU-only machine). These helpers
  use gloo and CPU DDP there, and give every collective a finite timeout so that a dead
  rank ends the job instead of hanging it.
- One way out of a tool's process (``exit_process``), which ends a distributed run
  without the interpreter teardown that can abort a finished gloo rank.
"""
import argparse
import copy
import datetime
import gc
import inspect
import logging
import os
import os.path as osp
import sys
from argparse import Namespace
from typing import Any, Callable, NoReturn, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from mmclip.checkpoint import (
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointReadError,
    StateDictMismatchError,
    UnsafeCheckpointError,
)
from mmclip.datasets import DatasetLayoutError
from mmclip.datasets.transforms import ImageReadError
from mmclip.utils import PRECISIONS, amp_precision, check_precision
from mmclip.utils.cpu import usable_cores

DEFAULT_DIST_TIMEOUT_S = 1800

DEBUG_ENV = 'MMCLIP_DEBUG'
LOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

# Errors whose message already says what is wrong, where and what to do (an unreadable
# image, a dataset layout, a checkpoint, an argument or file checked with ValueError /
# FileNotFoundError as the API does, a missing optional package named with its pip
# command): the tools show them as they are, without a traceback through mmengine and the
# DataLoader.
USER_ERRORS = (ImageReadError, DatasetLayoutError, CheckpointDownloadError, CheckpointReadError,
               CheckpointFormatError, StateDictMismatchError, UnsafeCheckpointError, ValueError,
               FileNotFoundError, IsADirectoryError, NotADirectoryError, ImportError)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (``off`` for a switch, ``not set`` for
    an option without one), unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        if ('default' in text or not action.option_strings
                or argparse.SUPPRESS in (action.help, action.default)):
            return text
        if action.default is False:
            return f'{text} (default: off)'
        if action.default is None:
            return f'{text} (default: not set)'
        return f'{text} (default: %(default)s)'


LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    """``--launcher``, ``--verbose``, and the ``--local-rank`` that torch.distributed.launch
    passes, as tools/train.py and tools/test.py take them."""
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--verbose', action='store_true',
                        help='also show the environment, the full config and the hook order '
                        'on the console (they always go to the log file in the work dir)')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``: the full traceback of an error instead of its one line."""
    parser.add_argument('--debug', action='store_true',
                        help=f'show the traceback of an error, not just its message '
                        f'(also: {DEBUG_ENV}=1)')


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """``--debug`` in ``argv`` (default ``sys.argv``) or ``MMCLIP_DEBUG`` set to a non-zero value;
    read before parsing, so that errors in parsing and checking arguments honour it too."""
    argv = sys.argv[1:] if argv is None else argv
    return '--debug' in argv or os.environ.get(DEBUG_ENV, '0') not in ('', '0')


def add_precision_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """``--amp`` and ``--precision`` (exclusive), with one meaning in every tool."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--amp', action='store_true',
                       help='mixed precision: bf16 autocast on the CPU, fp16 autocast on CUDA '
                       '(fp16 with loss scaling when training)')
    group.add_argument('--precision', choices=PRECISIONS, nargs='+' if several else None,
                       default=['fp32'] if several else 'fp32',
                       help='autocast precision of the forward pass' + (
                           ' (one or more)' if several else '') +
                       '; bf16 on CPU or CUDA, fp16 on CUDA only')


def chosen_precision(args: Namespace, device: str) -> str:
    """The precision ``--amp`` / ``--precision`` asks for on ``device``.

    Raises:
        ValueError: one the device cannot run (fp16 on the CPU), naming the option.
    """
    precision = amp_precision(device) if args.amp else args.precision
    try:
        check_precision(precision, device)
    except ValueError as err:
        raise ValueError(f'--precision {precision}: {err}') from None
    return precision


def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


# Bare names no component reads (or top-level variables, resolved when the file is read):
# setting them changes nothing, so they are refused with the option that does the job.
_RESOLVED_VARIABLES = {'data_root': '--data-root DIR',
                       'pretrained': '--pretrained PATH_OR_URL (tools/train.py)',
                       'num_classes': 'model.head.num_classes=N (and data_preprocessor.'
                                      'num_classes=N where the config sets it)'}


def check_cfg_options(options: Optional[dict]) -> None:
    """Refuse ``--cfg-options`` keys that would set a bare ``data_root``, ``pretrained`` or
    ``num_classes``."""
    for key in options or {}:
        if key in _RESOLVED_VARIABLES:
            raise ValueError(f'--cfg-options {key}=...: a top-level {key} is read by no '
                             f'component (a config variable is resolved when the file is read), '
                             f'so setting it changes nothing; use {_RESOLVED_VARIABLES[key]}.')


def set_data_root(cfg: Config, root: str, loader_keys: Sequence[str] = LOADER_KEYS) -> None:
    """Point the datasets of ``loader_keys`` (those the config has) at ``root``, in place;
    a top-level ``data_root`` variable is updated too, so the dumped config tells the truth."""
    if not osp.isdir(root):
        raise NotADirectoryError(f'--data-root {root}: no such directory.')
    for key in loader_keys:
        if cfg.get(key) is not None and cfg[key].get('dataset') is not None:
            cfg[key].dataset.data_root = root
    if 'data_root' in cfg:
        cfg.data_root = root


def cap_num_workers(cfg: Config) -> None:
    """At most one DataLoader worker per core this process may use (torch warns beyond)."""
    cores = usable_cores()
    for key in LOADER_KEYS:
        loader = cfg.get(key)
        if loader is not None and loader.get('num_workers', 0) > cores:
            loader.num_workers = cores


def apply_common_args(cfg: Config, args: Namespace) -> Config:
    """A copy of ``cfg`` with the options tools/train.py and tools/test.py share:
    ``--cfg-options``, ``--launcher`` and ``--work-dir`` (default: the config's
    ``work_dir``, else ``./work_dirs/<config or zoo name>``); DataLoader workers are capped
    at the cores available. ``cfg`` is not changed."""
    cfg = copy.deepcopy(cfg)
    check_cfg_options(args.cfg_options)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cap_num_workers(cfg)
    return cfg


def _no_forward_buffer_sync() -> dict:
    """The DDP argument that stops the per-forward broadcast of buffers (mmengine's
    default): torch releases that deprecate ``broadcast_buffers`` with a FutureWarning
    from every rank name it ``forward_sync_buffers``."""
    ddp_args = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    if 'forward_sync_buffers' in ddp_args:
        return dict(forward_sync_buffers=False)
    return dict(broadcast_buffers=False)


def configure_distributed(cfg: Config) -> None:
    """Edit ``cfg`` in place for its ``launcher``: a collective timeout (``env_cfg.dist_cfg.
    timeout``, seconds) and, unless the config sets ``model_wrapper_cfg``, mmengine's DDP
    wrapper; without CUDA, the gloo backend and CPU DDP.

    Raises:
        ValueError: a launcher other than 'pytorch' without CUDA.
    """
    if cfg.launcher == 'none':
        return
    dist_cfg = cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    dist_cfg.setdefault('timeout', DEFAULT_DIST_TIMEOUT_S)
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = ConfigDict(
            type='MMDistributedDataParallel',
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            **_no_forward_buffer_sync())
    if torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ValueError(f'--launcher {cfg.launcher} needs CUDA; on the CPU use --launcher '
                         'pytorch (tools/dist_train.sh, tools/dist_test.sh).')
    dist_cfg.backend = 'gloo'
    cfg.model_wrapper_cfg.device_ids = None  # CPU modules take no device_ids


def init_cpu_process_group(cfg: Config) -> None:
    """Start the gloo process group when there is no CUDA (before building the Runner,
    which then leaves it as it is)."""
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if not torch.distributed.is_initialized():
        timeout = datetime.timedelta(seconds=cfg.env_cfg.dist_cfg.timeout)
        torch.distributed.init_process_group(backend='gloo', timeout=timeout)


def user_message(err: Exception) -> str:
    """The error's own message; from a DataLoader worker, whose re-raised message carries
    the worker's traceback, its last line without the exception's name."""
    message = str(err).strip()
    if 'Original Traceback' in message:
        message = message.splitlines()[-1].split(f'{type(err).__name__}: ', 1)[-1]
    return message


def exit_code_of(run: Callable[[], Any], debug: Optional[bool] = None) -> int:
    """Run a tool's body: its exit code when it returns an int, else 0; 1, with a
    one-line error, for a ``USER_ERRORS`` error (logged, so that it also reaches the log
    file, when ``run`` started a Runner; else printed to stderr as ``ERROR: <message>``).
    Other errors, and every error with ``debug`` (default: ``debug_requested()``),
    propagate with their traceback."""
    before = MMLogger.get_current_instance()
    try:
        result = run()
    except USER_ERRORS as err:
        if debug_requested() if debug is None else debug:
            raise
        logger = MMLogger.get_current_instance()
        if logger is before or logger.instance_name == 'mmengine':  # no Runner started
            print(f'ERROR: {user_message(err)}', file=sys.stderr)
        else:
            logger.error(user_message(err))
        return 1
    return result if isinstance(result, int) else 0


def exit_process(code: int) -> NoReturn:
    """End a tool's process with exit status ``code``: ``sys.exit`` unless the process
    joined a process group. Such a process destroys the group, lets the finished Runner's
    DataLoader workers stop, flushes its logs and output, and leaves with ``os._exit``.

    The interpreter's teardown is skipped on purpose: gloo's worker threads outlive
    ``destroy_process_group``, and one that frees the last reference to a tensor of a
    collective while the interpreter shuts down needs the GIL there, which aborts the
    process ('terminate called without an active exception', SIGABRT) and turns a
    finished rank into a failed job.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        sys.exit(code)
    torch.distributed.destroy_process_group()
    gc.collect()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
