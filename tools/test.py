"""Evaluate a checkpoint on a config's test set (ImageNet-1k val for the zoo configs).

    python tools/test.py CONFIG CHECKPOINT|MODEL.onnx [--work-dir DIR] [--out FILE.json|FILE.pkl]
        [--skip-bad-images] [--amp | --precision fp32|bf16|fp16] [--compile]
        [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

CHECKPOINT is a local file (.pth/.pt/.bin/.safetensors, mmclip or timm keys) or an
http(s) URL, loaded strictly by ``mmclip.checkpoint.load_checkpoint``; or an ``.onnx``
from tools/deployment/pytorch2onnx.py, run by ONNX Runtime (fp32, one process) through the
same dataset, pipeline and metrics. Progress is logged
by rank 0; the metrics end in a table, and ``--out`` writes one record per image (file,
gt label, predicted label, score) in dataset order. Multi-process runs gather results
through the process group (no shared folder needed) and give up after
``env_cfg.dist_cfg.timeout`` seconds (default 1800) if a rank stops answering. Any
failure exits non-zero, which torchrun and srun propagate to the whole job.
Without CUDA, distributed runs use gloo on the CPU.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

import torch

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper

import mmclip  # noqa: F401  (registers mmclip's modules for default_scope='mmclip')
from mmclip.checkpoint import load_checkpoint
from mmclip.engine import MMClipRunner
from mmclip.engine.launch import (apply_common_args, configure_distributed, exit_code_of,
                                  init_cpu_process_group)
from mmclip.evaluation import check_out_file
from mmclip.utils import PRECISIONS, maybe_compile

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint with an mmclip config.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file path or http(s) URL')
    parser.add_argument('--work-dir', help='where logs go (default: the config\'s work_dir, '
                        'else ./work_dirs/<config name>)')
    parser.add_argument('--out', help='write per-image predictions, in dataset order, to '
                        'this .json or .pkl file')
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='skip unreadable images (one warning line each, counted in the '
                        'results) instead of stopping at the first one')
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument('--amp', action='store_true',
                           help='autocast: fp16 on CUDA, bf16 on the CPU')
    precision.add_argument('--precision', choices=PRECISIONS, default='fp32',
                           help='forward-pass precision (fp16 needs CUDA)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone (the first batches compile)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.batch_size=32')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.out is not None:
        check_out_file(args.out)  # fail now, not after the whole evaluation
    if args.checkpoint.endswith('.onnx') and (args.amp or args.precision != 'fp32' or
                                              args.compile or args.launcher != 'none'):
        parser.error('an .onnx model runs as exported (fp32) in one process: drop --amp, '
                     '--precision, --compile and --launcher')
    if args.checkpoint.endswith('.onnx'):
        from mmclip.deployment import MissingExtraError, require
        try:
            require('onnxruntime')
        except MissingExtraError as err:
            parser.error(str(err))
    if args.precision == 'fp16' and not torch.cuda.is_available():
        parser.error('--precision fp16 needs CUDA; on the CPU use --precision bf16 (or --amp).')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to a copy of ``cfg``."""
    cfg = apply_common_args(cfg, args)
    # Weights come from CHECKPOINT through mmclip's loader, not mmengine's load_from.
    cfg.load_from, cfg.resume = None, False
    if args.skip_bad_images:
        skip_bad_images(cfg.test_dataloader.dataset)
    if args.out is not None:
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = evaluators + [dict(type='DumpPredictions', out_file=args.out)]
    precision = args.precision
    if args.amp:
        precision = 'fp16' if torch.cuda.is_available() else 'bf16'
    test_cfg = {k: v for k, v in (cfg.get('test_cfg') or {}).items() if k != 'fp16'}
    cfg.test_cfg = dict(test_cfg, type='PrecisionTestLoop', precision=precision)
    # uint8 batches copy to the GPU faster from pinned memory.
    cfg.test_dataloader.setdefault('pin_memory', torch.cuda.is_available())
    configure_distributed(cfg)
    if args.checkpoint.endswith('.onnx'):
        from mmclip.deployment import OnnxRuntimeClassifier  # noqa: F401  (registers it)
        cfg.model = dict(type='OnnxRuntimeClassifier', onnx_file=args.checkpoint)
        cfg.pop('data_preprocessor', None)  # the graph normalises itself
        cfg.test_cfg = dict(type='TestLoop')  # nothing to autocast
    return cfg


def skip_bad_images(dataset_cfg: ConfigDict) -> None:
    """Switch every ``LoadImageFromFile`` of the test pipeline to ``on_error='skip'``."""
    loaders = [t for t in dataset_cfg.get('pipeline', []) if t.get('type') == 'LoadImageFromFile']
    if not loaders:
        raise ValueError('--skip-bad-images needs a LoadImageFromFile step in '
                         'test_dataloader.dataset.pipeline; the config has none.')
    for step in loaders:
        step['on_error'] = 'skip'


def format_metrics_table(metrics: dict, details_file: str) -> str:
    """A two-column text table of the scalar metrics; tensors are only named."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    others = [k for k in metrics if k not in scalars]
    width = max([len('metric')] + [len(k) for k in scalars])
    rule = f"+-{'-' * width}-+-{'-' * 10}-+"
    rows = [rule, f"| {'metric':<{width}} | {'value':>10} |", rule]
    for key, value in scalars.items():
        text = f'{value:.2f}' if isinstance(value, float) else str(value)
        rows.append(f'| {key:<{width}} | {text:>10} |')
    rows.append(rule)
    if others:
        rows.append(f"{', '.join(others)}: see {details_file}")
    return '\n'.join(rows)


def run(args: argparse.Namespace) -> dict:
    cfg = merge_args(Config.fromfile(args.config), args)
    init_cpu_process_group(cfg)
    runner = MMClipRunner.from_cfg(cfg)
    if not args.checkpoint.endswith('.onnx'):
        # Every rank loads; for a URL the loader downloads once per node into the cache.
        load_checkpoint(runner.model, args.checkpoint, strict=True, logger=runner.logger)
    maybe_compile(runner.model.module if is_model_wrapper(runner.model) else runner.model,
                  args.compile)
    metrics = runner.test()
    if is_main_process():
        details = osp.join(runner.log_dir, f'{runner.timestamp}.json')
        runner.logger.info('Results of ' + args.checkpoint + '\n' +
                           format_metrics_table(metrics, details))
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: run(args))

if __name__ == '__main__':
    sys.exit(main())
