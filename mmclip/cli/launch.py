"""Command-line plumbing shared by the tools (tools/*.py, demo/image_demo.py).

- One error path: ``exit_code_of`` turns a user error (``USER_ERRORS``: a bad argument,
  file, image, dataset or checkpoint) into one ``ERROR`` line and exit code 1; ``--debug``
  or ``MMCLIP_DEBUG=1`` shows the traceback instead.
- One help style (``ArgumentParser``: every option shows its default) and one meaning of
  ``--amp`` / ``--precision`` (``add_precision_options``, ``chosen_precision``).
- The options tools/train.py and tools/test.py share (``apply_common_args``:
  ``--cfg-options``, ``--work-dir``, ``--data-root``, worker count capped at the machine's
  cores). Configs come from a file or a zoo name through
  ``mmclip.apis.model_zoo.resolve_config``. ``--cfg-options`` (``add_cfg_options``,
  ``merge_cfg_options``) only sets keys the config has: a misspelt key would be ignored,
  or end in a traceback from deep in a builder, so it is refused with the closest keys.
- Distributed set-up: mmengine 0.10.7 assumes CUDA for ``--launcher pytorch`` (its
  launcher calls ``torch.cuda.set_device`` and its DDP wrapper passes
  ``device_ids=[LOCAL_RANK]``, both of which fail on a CPU-only machine). These helpers
  use gloo and CPU DDP there, and give every collective a finite timeout so that a dead
  rank ends the job instead of hanging it.
- One way out of a tool's process (``exit_process``), which ends a distributed run
  without the interpreter teardown that can abort a finished gloo rank.
"""
import argparse
import contextlib
import copy
import datetime
import difflib
import gc
import inspect
import logging
import os
import os.path as osp
import signal
import sys
import threading
from argparse import Namespace
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmclip.checkpoint import (
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointReadError,
    StateDictMismatchError,
    UnsafeCheckpointError,
)
from mmclip.datasets import DatasetLayoutError
from mmclip.datasets.transforms import ImageReadError
from mmclip.utils import PRECISIONS, amp_precision, check_device, check_precision
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


def help_with_default(action: argparse.Action) -> Optional[str]:
    """``action``'s help ending with its default (``off`` for a switch, ``not set`` for an
    option without one), unless the text already says it or it is a positional."""
    text = action.help or ''
    if ('default' in text or not action.option_strings
            or argparse.SUPPRESS in (action.help, action.default)):
        return action.help
    if action.default is False:
        return f'{text} (default: off)'
    if action.default is None:
        return f'{text} (default: not set)'
    return f'{text} (default: %(default)s)'


class ArgumentParser(argparse.ArgumentParser):
    """The tools' parser: every option's help ends with its default (``help_with_default``;
    options of a group call it themselves)."""

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        action.help = help_with_default(action)
        return action


def load_script(path: str, name: str) -> Any:
    """A script of tools/ as a module named ``name`` (tools/ is no package, and its scripts
    are not on ``sys.path`` when a test loads one of them)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    actions = [
        group.add_argument('--amp', action='store_true',
                           help='mixed precision: bf16 autocast on the CPU, fp16 autocast on '
                           'CUDA (fp16 with loss scaling when training)'),
        group.add_argument('--precision', choices=PRECISIONS, nargs='+' if several else None,
                           default=['fp32'] if several else 'fp32',
                           help='autocast precision of the forward pass' + (
                               ' (one or more)' if several else '') +
                           '; bf16 on CPU or CUDA, fp16 on CUDA only')]
    for action in actions:
        action.help = help_with_default(action)


def chosen_precision(args: Namespace, device: str) -> str:
    """The precision ``--amp`` / ``--precision`` asks for on ``device``.

    Raises:
        ValueError: a CUDA device that is not there, or a precision the device cannot
            run (fp16 on the CPU), naming the option.
    """
    precision = amp_precision(device) if args.amp else args.precision
    check_device(device)  # its own message: the precision is not what is wrong
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
        key = key[len(NEW_KEY_PREFIX):] if key.startswith(NEW_KEY_PREFIX) else key
        if key in _RESOLVED_VARIABLES:
            raise ValueError(f'--cfg-options {key}=...: a top-level {key} is read by no '
                             f'component (a config variable is resolved when the file is read), '
                             f'so setting it changes nothing; use {_RESOLVED_VARIABLES[key]}.')


# ``+KEY=VALUE`` adds a key the config does not have (e.g. a keyword argument of the class
# a dict builds that the config leaves at its default); every other KEY must exist.
NEW_KEY_PREFIX = '+'
# Top-level settings mmengine's Runner reads when a config has them (experiment_name, ...).
RUNNER_SETTINGS = frozenset(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``KEY=VALUE`` items; numbers, booleans, None and lists
    parsed), with a ``ValueError`` naming the item for an item without ``=`` or a value with
    unbalanced brackets, where mmengine's gave an unpacking error or an assertion."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Namespace,
                 values: Sequence[str], option_string: Optional[str] = None) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            key, equals, text = item.partition('=')
            if not equals or not key:
                raise ValueError(f"--cfg-options: {item!r} is not KEY=VALUE "
                                 '(e.g. test_dataloader.batch_size=32).')
            try:
                options[key] = self._parse_iterable(text)
            except AssertionError:
                raise ValueError(f"--cfg-options: {item!r}: the value has unbalanced brackets "
                                 '(a list is [a,b] or a,b; a tuple is (a,b)).') from None
        setattr(namespace, self.dest, options)


def add_cfg_options(parser: argparse.ArgumentParser, example: str) -> None:
    """``--cfg-options KEY=VALUE ...`` (``CfgOptionsAction``), checked by
    ``merge_cfg_options``."""
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, metavar='KEY=VALUE',
                        help=f'override config keys, e.g. {example}; a KEY (a.b, or a.0.b for '
                        'an item of a list) must exist in the config, +KEY=VALUE adds a new one')


def _lookup(tree: Any, key: str) -> Tuple[bool, Any]:
    """(found, value) of the dotted ``key`` in ``tree``; a number indexes a list, as
    mmengine's ``merge_from_dict`` does. The empty key is ``tree`` itself."""
    node = tree
    for part in key.split('.') if key else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _all_keys(tree: Any, prefix: str = '') -> List[str]:
    """Every dotted key in ``tree``: sections, their keys, list items."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return []
    keys = []
    for name, value in items:
        key = f'{prefix}{name}'
        keys += [key] + _all_keys(value, key + '.')
    return keys


def _unknown_key(tree: dict, key: str) -> ValueError:
    """'unknown key', with the closest existing key, or else the keys of the deepest section
    ``key`` starts with. Only the part after that section is compared (all of
    ``loader.zzz`` would resemble ``loader.lr``), with keys of the same depth first (a
    misspelt leaf is not a section)."""
    parts = key.split('.')
    parent = next(p for p in ('.'.join(parts[:i]) for i in range(len(parts) - 1, -1, -1))
                  if _lookup(tree, p)[0])
    section = _lookup(tree, parent)[1]
    start = len(parent) + 1 if parent else 0
    rest = key[start:]
    below = _all_keys(section)
    close = (difflib.get_close_matches(rest, [k for k in below if k.count('.') == rest.count('.')],
                                       n=1, cutoff=0.6)
             or difflib.get_close_matches(rest, below, n=1, cutoff=0.6))
    if close:
        hint = f"did you mean '{key[:start]}{close[0]}'?"
    else:
        names = sorted(map(str, section)) if isinstance(section, dict) else []
        where = f"'{parent}'" if parent else 'the config (top level)'
        hint = f'{where} has: {", ".join(names)}' if names else f'{where} has no keys'
    return ValueError(f"--cfg-options: unknown key '{key}'; {hint}")


def _check_value(key: str, old: Any, new: Any) -> None:
    """A number or boolean of the config stays one (None is allowed anywhere): text where a
    number belongs would fail in a builder, with a traceback that names no option."""
    if old is None or new is None:
        return
    if isinstance(old, bool):
        ok, expected = isinstance(new, bool), 'True or False'
    elif isinstance(old, int):
        ok, expected = isinstance(new, int) and not isinstance(new, bool), 'an integer'
    elif isinstance(old, float):
        ok, expected = isinstance(new, (int, float)) and not isinstance(new, bool), 'a number'
    else:
        return
    if not ok:
        raise ValueError(f'--cfg-options: {key}={new}: expected {expected} '
                         f'(the config has {old!r}).')


def _checked_key(tree: dict, key: str, value: Any) -> str:
    """The key to merge for the ``--cfg-options`` item ``key=value``, checked against the
    config ``tree`` (see ``merge_cfg_options``)."""
    if key.startswith(NEW_KEY_PREFIX):
        name = key[len(NEW_KEY_PREFIX):]
        if _lookup(tree, name)[0]:
            raise ValueError(f"--cfg-options: '{key}' adds a key, but '{name}' exists "
                             f"already; set it without the '{NEW_KEY_PREFIX}'.")
        parent = name.rpartition('.')[0]
        found, section = _lookup(tree, parent)
        if not found:
            raise _unknown_key(tree, parent)
        if not isinstance(section, dict) or not name.rpartition('.')[2]:
            raise ValueError(f"--cfg-options: '{key}': '{parent}' is not a section (dict) of "
                             'the config, so no key can be added to it.')
        return name
    found, old = _lookup(tree, key)
    if not found and key not in RUNNER_SETTINGS:
        raise _unknown_key(tree, key)
    _check_value(key, old, value)
    return key


def merge_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """Merge ``--cfg-options`` into ``cfg`` in place. Each key must exist in the config (at
    any depth; ``a.0.b`` for an item of a list), or be a top-level setting of mmengine's
    Runner, or be declared new as ``+KEY`` in a section the config has. A number or boolean
    must stay one.

    Raises:
        ValueError: one line naming the key, with the closest existing keys for an
            unknown one.
    """
    if not options:
        return
    check_cfg_options(options)
    tree = cfg.to_dict()
    cfg.merge_from_dict({_checked_key(tree, key, value): value for key, value in options.items()})


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
    merge_cfg_options(cfg, args.cfg_options)
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


# mmengine's format for every level but ERROR, where it adds the code location: that of
# exit_code_of, which tells the user nothing (the message names the file or option).
_ERROR_FORMAT = '%(asctime)s - %(name)s - %(levelname)s - %(message)s'


def _is_console(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler))


def log_error(logger: logging.Logger, message: str) -> None:
    """Log ``message`` at ERROR to the Runner's log file(s) of ``logger``, formatted as its
    other lines are, with each handler's date format; the console gets the plain line
    (``report_error``)."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if record.levelno < handler.level or _is_console(handler):
            continue
        formatter = handler.formatter
        handler.setFormatter(logging.Formatter(_ERROR_FORMAT,
                                               getattr(formatter, 'datefmt', None)))
        try:
            handler.handle(record)
        finally:
            handler.setFormatter(formatter)


def report_error(message: str) -> None:
    """The console's one line for an error, whether a Runner started or not: the same
    ``ERROR: ...`` everywhere, without the logger's time and name prefix."""
    sys.stdout.flush()  # after the run's own output, not inside it
    print(f'ERROR: {message}', file=sys.stderr, flush=True)


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def exit_code_of(run: Callable[[], Any], debug: Optional[bool] = None) -> int:
    """Run a tool's body: its exit code when it returns an int, else 0; 1, with a
    one-line error, for a ``USER_ERRORS`` error (``ERROR: <message>`` on stderr, after
    ``rank R: `` in a distributed run, and
    logged to the log file when ``run`` started a Runner); 130, with one line (rank 0's),
    for Ctrl-C; 1 without a word when another rank of a distributed run stopped (it said
    why).
    Other errors, and every error with ``debug`` (default: ``debug_requested()``),
    propagate with their traceback."""
    before = MMLogger.get_current_instance()
    with _quiet_threads_once_interrupted():
        return _exit_code_of(run, debug, before)


def _exit_code_of(run: Callable[[], Any], debug: Optional[bool], before: MMLogger) -> int:
    try:
        result = run()
    except USER_ERRORS as err:
        if debug_requested() if debug is None else debug:
            raise
        message = _rank_prefix() + user_message(err)
        logger = MMLogger.get_current_instance()
        if logger is not before and logger.instance_name != 'mmengine':  # a Runner started
            log_error(logger, message)
        report_error(message)
        return 1
    except KeyboardInterrupt:
        if debug_requested() if debug is None else debug:
            raise
        if os.environ.get('RANK', '0') == '0':  # every rank gets the SIGINT: one line
            report_error('interrupted (Ctrl-C).')
        return INTERRUPTED_EXIT_CODE
    except RuntimeError as err:
        if (debug_requested() if debug is None else debug) or not _peer_failed(err):
            raise
        return 1  # the failed rank printed its own line; torchrun stops this one anyway
    return result if isinstance(result, int) else 0


def _rank_prefix() -> str:
    """'rank R: ' in a distributed run (torchrun sets WORLD_SIZE and RANK), so that the one
    line also says which process failed."""
    if int(os.environ.get('WORLD_SIZE', '1')) > 1:
        return f"rank {os.environ.get('RANK', '?')}: "
    return ''


@contextlib.contextmanager
def _quiet_threads_once_interrupted() -> Iterator[None]:
    """From Ctrl-C on, the DataLoader workers are gone: a helper thread still talking to
    one (multiprocessing's fd sharing) ends on a reset connection, which is no news. That
    thread reports through ``sys.excepthook`` (``resource_sharer._serve``), others through
    ``threading.excepthook``: both are quieted for those errors. Such an error waits up to
    2 s for the SIGINT's handler (which runs on the main thread, possibly after the helper
    thread failed) before it is judged news; the signal handler and hooks are restored
    afterwards."""
    interrupted = threading.Event()
    hook, sys_hook = threading.excepthook, sys.excepthook

    def is_news(exc_type: type) -> bool:
        if not issubclass(exc_type, (ConnectionError, EOFError)):
            return True
        # The SIGINT's Python handler runs on the main thread, which may get to it only
        # after this thread saw the workers go: wait a moment for it (this thread only).
        return not interrupted.wait(timeout=2.0)

    def quiet(args) -> None:
        if is_news(args.exc_type):
            hook(args)

    def quiet_sys(exc_type, exc, traceback) -> None:
        if is_news(exc_type):
            sys_hook(exc_type, exc, traceback)

    def on_sigint(signum, frame) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    threading.excepthook, sys.excepthook = quiet, quiet_sys
    try:
        yield
    finally:
        if in_main:
            signal.signal(signal.SIGINT, handler)
        if not interrupted.is_set():  # after Ctrl-C, threads may still end until exit
            threading.excepthook, sys.excepthook = hook, sys_hook


# What gloo / NCCL raise in the other ranks when one rank has stopped mid-collective.
_PEER_FAILURE_MARKS = ('Connection closed by peer', 'Connection reset by peer',
                       'NCCL communicator was aborted')


def _peer_failed(err: RuntimeError) -> bool:
    """A collective of a distributed run failed because another rank stopped."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
            and any(mark in str(err) for mark in _PEER_FAILURE_MARKS))


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
