"""Distributed set-up shared by tools/train.py and tools/test.py.

mmengine 0.10.7 assumes CUDA for ``--launcher pytorch``: its launcher calls
``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``, both of
which fail on a CPU-only machine. These helpers use gloo and CPU DDP there, and give every
collective a finite timeout so that a dead rank ends the job instead of hanging it.
"""
import copy
import datetime
import os.path as osp
from argparse import Namespace
from typing import Any, Callable

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from mmclip.checkpoint import (CheckpointDownloadError, CheckpointFormatError,
                               CheckpointReadError, StateDictMismatchError,
                               UnsafeCheckpointError)
from mmclip.datasets import DatasetLayoutError
from mmclip.datasets.transforms import ImageReadError

DEFAULT_DIST_TIMEOUT_S = 1800

# Errors whose message already says what is wrong, where and what to do (an unreadable
# image, a dataset layout, a checkpoint): the tools show them as they are, without a
# traceback through mmengine and the DataLoader.
USER_ERRORS = (ImageReadError, DatasetLayoutError, CheckpointDownloadError, CheckpointReadError,
               CheckpointFormatError, StateDictMismatchError, UnsafeCheckpointError)


def apply_common_args(cfg: Config, args: Namespace) -> Config:
    """A copy of ``cfg`` with the options tools/train.py and tools/test.py share:
    ``--cfg-options``, ``--launcher`` and ``--work-dir`` (default: the config's
    ``work_dir``, else ``./work_dirs/<config name>``). ``cfg`` is not changed."""
    cfg = copy.deepcopy(cfg)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def configure_distributed(cfg: Config) -> None:
    """Edit ``cfg`` in place for its ``launcher``: a collective timeout (``env_cfg.dist_cfg.
    timeout``, seconds) always; without CUDA, the gloo backend and CPU DDP.

    Raises:
        ValueError: a launcher other than 'pytorch' without CUDA.
    """
    if cfg.launcher == 'none':
        return
    dist_cfg = cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    dist_cfg.setdefault('timeout', DEFAULT_DIST_TIMEOUT_S)
    if torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ValueError(f'--launcher {cfg.launcher} needs CUDA; on the CPU use --launcher '
                         'pytorch (tools/dist_train.sh, tools/dist_test.sh).')
    dist_cfg.backend = 'gloo'
    wrapper_cfg = ConfigDict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    wrapper_cfg.device_ids = None  # CPU modules take no device_ids
    cfg.model_wrapper_cfg = wrapper_cfg


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


def exit_code_of(run: Callable[[], Any]) -> int:
    """Run a tool's body: 0 when it finishes; 1, with a one-line error log, for a
    ``USER_ERRORS`` error. Other errors propagate with their traceback."""
    try:
        run()
    except USER_ERRORS as err:
        MMLogger.get_current_instance().error(user_message(err))
        return 1
    return 0
