"""Train (fine-tune) a model from an mmclip config with mmengine's Runner.

    python tools/train.py CONFIG [--data-root DIR] [--pretrained PATH_OR_URL]
        [--work-dir DIR] [--resume [auto|PATH]] [--amp | --precision fp32|bf16|fp16]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
        [--verbose] [--debug]

``--resume`` alone (or ``--resume auto``) continues from the latest checkpoint in the
work dir, and starts afresh when there is none, so the same command can be re-submitted
after a preemption. ``--resume PATH`` continues from that checkpoint. Pre-trained
weights for fine-tuning come from the config's ``LoadPretrainedHook`` (``--pretrained``
replaces its checkpoint), which a resumed run skips. ``--data-root`` points the train,
val and test datasets at one folder. Both show in the config dumped to the work dir.
Before the first iteration, a head whose ``num_classes`` differs from the training set's
class count stops the run. Without CUDA, distributed runs use the gloo backend on the CPU.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

import mmclip  # noqa: F401  (mmclip's registries and default scope)
from mmclip.apis.model_zoo import resolve_config
from mmclip.checkpoint.download import is_url
from mmclip.cli.launch import (
    ArgumentParser,
    add_cfg_options,
    add_debug_option,
    add_launch_options,
    add_precision_options,
    apply_common_args,
    chosen_precision,
    configure_distributed,
    debug_requested,
    default_device,
    exit_code_of,
    exit_process,
    init_cpu_process_group,
    set_data_root,
)
from mmclip.cli.outputs import check_work_dir
from mmclip.engine import MMClipRunner, QuietRunner
from mmclip.registry import RUNNERS


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Train a classifier from an mmclip config.')
    parser.add_argument('config', help='config file path, or a model-zoo name')
    parser.add_argument('--data-root', help='dataset folder for the train, val and test '
                        "datasets (their data_root; default: the config's)")
    parser.add_argument('--pretrained', help='checkpoint path or URL to fine-tune from (the '
                        "LoadPretrainedHook's checkpoint; default: the config's)")
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help="'auto' (or no value): the latest checkpoint in the work dir, if "
                        'any; or a checkpoint path to continue from (default: no resume)')
    add_precision_options(parser)
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by (GPUs x batch size) / auto_scale_lr.base_batch_size')
    add_cfg_options(parser, 'train_cfg.max_epochs=10')
    add_launch_options(parser)
    add_debug_option(parser)
    args = parser.parse_args(argv)
    args.precision = chosen_precision(args, default_device())
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to ``cfg`` (a new Config; ``cfg`` is not changed)."""
    cfg = apply_common_args(cfg, args)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root)
    if args.pretrained is not None:
        set_pretrained(cfg, args.pretrained)

    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if '://' not in args.resume and not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint file.')
        cfg.resume, cfg.load_from = True, args.resume

    set_precision(cfg, args.precision)
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config '
                             '(the total batch size its learning rate was set for).')
        cfg.auto_scale_lr.enable = True
    configure_distributed(cfg)
    return cfg


# The hooks whose ``checkpoint`` --pretrained replaces (ZeroShotInitHook: both CLIP towers).
PRETRAINED_HOOKS = ('LoadPretrainedHook', 'ZeroShotInitHook')


def set_pretrained(cfg: Config, source: str) -> None:
    """Make the config's ``LoadPretrainedHook`` load ``source`` (and a top-level
    ``pretrained`` variable say so, for the dumped config)."""
    if not is_url(source) and not osp.isfile(source):
        raise FileNotFoundError(f'--pretrained {source}: no such checkpoint file.')
    hooks = [h for h in cfg.get('custom_hooks') or [] if h.get('type') in PRETRAINED_HOOKS]
    if not hooks:
        raise ValueError('--pretrained sets the checkpoint of the LoadPretrainedHook (or '
                         'ZeroShotInitHook) in custom_hooks; this config has none. Add dict(type='
                         "'LoadPretrainedHook', checkpoint=...) to custom_hooks, or use "
                         '--cfg-options load_from=PATH for a checkpoint of this very model.')
    for hook in hooks:
        hook['checkpoint'] = source
    if 'pretrained' in cfg:
        cfg.pretrained = source


# Optimizer wrapper per training precision: float16 needs loss scaling (mmengine's, CUDA
# only); bfloat16 autocast alone runs on the CPU and on CUDA.
PRECISION_WRAPPERS = {'fp16': 'AmpOptimWrapper', 'bf16': 'BF16AutocastOptimWrapper'}


def set_precision(cfg: Config, precision: str) -> None:
    """Switch ``optim_wrapper`` to the mixed-precision wrapper of ``precision``."""
    if precision == 'fp32':
        return
    wanted = PRECISION_WRAPPERS[precision]
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == wanted:
        return
    if wrapper_type != 'OptimWrapper':
        raise ValueError(f"--precision {precision} replaces optim_wrapper.type 'OptimWrapper' "
                         f'by {wanted!r}; the config uses {wrapper_type!r}.')
    cfg.optim_wrapper.type = wanted
    if precision == 'fp16':
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def check_num_classes(runner: Runner) -> None:
    """A head of another class count than the training set's is an error, before training."""
    dataset = runner.train_loop.dataloader.dataset
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    head_classes = getattr(getattr(model, 'head', None), 'num_classes', None)
    if classes is None or head_classes is None or len(classes) == head_classes:
        return
    raise ValueError(
        f'The model head has num_classes={head_classes} but the training set has '
        f'{len(classes)} classes; set --cfg-options model.head.num_classes={len(classes)} '
        f'(and data_preprocessor.num_classes={len(classes)} where the config sets it).')


def build_runner(cfg: Config, verbose: bool) -> Runner:
    """``runner_type`` if the config names one, else ``MMClipRunner`` (mmclip's safe,
    converting checkpoint loading for ``load_from`` and ``--resume``), with a quiet
    console unless ``verbose``."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return (MMClipRunner if verbose else QuietRunner).from_cfg(cfg)


TRAIN_PARTS = ('train_dataloader', 'train_cfg', 'optim_wrapper')


def check_train_parts(cfg: Config, config: str) -> None:
    """An evaluation-only config (a zoo model's, or the zero-shot ones) cannot train."""
    missing = [key for key in TRAIN_PARTS if not cfg.get(key)]
    if missing:
        raise ValueError(
            f'{config} has no training setup ({", ".join(missing)} missing): it is an '
            f'evaluation config. Train from a seed config (configs/clip/*_pt-64xb64_in1k*.py) '
            f'or a config that inherits one (docs/finetune.md).')


def train(args: argparse.Namespace) -> None:
    cfg = merge_args(resolve_config(args.config)[0], args)
    check_train_parts(cfg, args.config)
    check_work_dir(cfg.work_dir)
    init_cpu_process_group(cfg)
    runner = build_runner(cfg, args.verbose)
    check_num_classes(runner)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    runner.logger.info(
        f'Training {args.config} on {len(runner.train_loop.dataloader.dataset)} images: device '
        f'{next(model.parameters()).device}, precision {args.precision}; checkpoints and logs '
        f'go to {runner.work_dir}')
    runner.train()


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: train(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    exit_process(main())
