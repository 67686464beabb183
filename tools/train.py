"""Train (fine-tune) a model from an mmclip config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

``--resume`` alone (or ``--resume auto``) continues from the latest checkpoint in the
work dir, and starts afresh when there is none, so the same command can be re-submitted
after a preemption. ``--resume PATH`` continues from that checkpoint. Pre-trained
weights for fine-tuning come from the config's ``LoadPretrainedHook``, which a resumed
run skips. Without CUDA, distributed runs use the gloo backend on the CPU.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmclip  # noqa: F401  (mmclip's registries and default scope)
from mmclip.engine import MMClipRunner
from mmclip.engine.launch import (apply_common_args, configure_distributed, exit_code_of,
                                  init_cpu_process_group)
from mmclip.registry import RUNNERS

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a classifier from an mmclip config.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help="'auto' (or no value): the latest checkpoint in the work dir, if "
                        'any; or a checkpoint path to continue from')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (fp16 autocast with dynamic loss scaling; CUDA)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by (GPUs x batch size) / auto_scale_lr.base_batch_size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_epochs=10')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to ``cfg`` (a new Config; ``cfg`` is not changed)."""
    cfg = apply_common_args(cfg, args)

    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if '://' not in args.resume and not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint file.')
        cfg.resume, cfg.load_from = True, args.resume

    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config '
                             '(the total batch size its learning rate was set for).')
        cfg.auto_scale_lr.enable = True
    configure_distributed(cfg)
    return cfg


def enable_amp(cfg: Config) -> None:
    if not torch.cuda.is_available():
        raise ValueError('--amp needs a CUDA device (mmengine\'s AmpOptimWrapper); none is '
                         'available. Train in fp32 on the CPU, or run on a GPU.')
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        return
    if wrapper_type != 'OptimWrapper':
        raise ValueError(f"--amp replaces optim_wrapper.type 'OptimWrapper'; the config uses "
                         f'{wrapper_type!r}.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def build_runner(cfg: Config) -> Runner:
    """``runner_type`` if the config names one, else ``MMClipRunner`` (mmclip's safe,
    converting checkpoint loading for ``load_from`` and ``--resume``)."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return MMClipRunner.from_cfg(cfg)


def train(args: argparse.Namespace) -> None:
    cfg = merge_args(Config.fromfile(args.config), args)
    init_cpu_process_group(cfg)
    build_runner(cfg).train()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: train(args))


if __name__ == '__main__':
    sys.exit(main())
