"""Evaluate a checkpoint on a config's test set (ImageNet-1k val for the zoo configs).

    python tools/test.py CONFIG|MODEL_NAME [CHECKPOINT|MODEL.onnx] [--data-root DIR]
        [--backend onnxruntime|openvino] [--work-dir DIR] [--out FILE.json|FILE.pkl]
        [--skip-bad-images]
        [--amp | --precision fp32|bf16|fp16] [--compile] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi] [--verbose] [--debug]

CONFIG is a config file or a model-zoo name (``mmclip.list_models()``). CHECKPOINT is a
local file (.pth/.pt/.bin/.safetensors, mmclip or timm keys) or an http(s) URL, loaded
strictly by ``mmclip.checkpoint.load_checkpoint``; it may be left out after a zoo name
(the zoo weights). Or it is an ``.onnx`` from tools/deployment/pytorch2onnx.py, run by ONNX
Runtime or, with ``--backend openvino``, OpenVINO (fp32, or ``--precision bf16`` in OpenVINO;
one process) through the same dataset, pipeline and metrics. Progress is
logged by rank 0; the metrics end in a table, and ``--out`` writes one record per image (file,
gt label, predicted label, score) in dataset order. Multi-process runs gather results
through the process group (no shared folder needed) and give up after
``env_cfg.dist_cfg.timeout`` seconds (default 1800) if a rank stops answering. Any
failure exits non-zero, which torchrun and srun propagate to the whole job.
Without CUDA, distributed runs use gloo on the CPU.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper

import mmclip  # noqa: F401  (registers mmclip's modules for default_scope='mmclip')
from mmclip.apis.backends import BACKENDS, CLI, choose_backend, is_exported
from mmclip.apis.model_zoo import resolve_config
from mmclip.checkpoint import load_checkpoint
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
from mmclip.cli.outputs import check_output_file, check_work_dir
from mmclip.engine import MMClipRunner, QuietRunner
from mmclip.evaluation import check_out_file, is_predictions_file
from mmclip.utils import maybe_compile


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Evaluate a checkpoint with an mmclip config.')
    parser.add_argument('config', help='config file path, or a model-zoo name')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file path or http(s) URL, or an exported .onnx '
                        "(default, after a zoo name: the model's published weights)")
    parser.add_argument('--backend', choices=BACKENDS,
                        help='the runtime: torch, or for an .onnx CHECKPOINT openvino (its '
                        'default on the CPU where installed) or onnxruntime')
    parser.add_argument('--data-root', help='dataset folder (sets test_dataloader.dataset.'
                        "data_root; default: the config's)")
    parser.add_argument('--work-dir', help='where logs go (default: the config\'s work_dir, '
                        'else ./work_dirs/<config name>)')
    parser.add_argument('--out', help='write per-image predictions, in dataset order, to '
                        'this .json or .pkl file')
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='skip unreadable images (one warning line each, counted in the '
                        'results) instead of stopping at the first one')
    add_precision_options(parser)
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone (the first batches compile)')
    add_cfg_options(parser, 'test_dataloader.batch_size=32')
    add_launch_options(parser)
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if args.out is not None:
        check_out_file(args.out)  # fail now, not after the whole evaluation
    if is_exported(args.checkpoint) and (args.amp or args.launcher != 'none'):
        parser.error('an .onnx model runs as exported in one process: drop --amp and '
                     '--launcher')
    try:
        args.backend = choose_backend(args.checkpoint, args.backend, args.precision,
                                      args.compile, CLI, device=default_device())
    except ValueError as err:
        parser.error(str(err))
    args.precision = chosen_precision(args, default_device())
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to a copy of ``cfg``."""
    cfg = apply_common_args(cfg, args)
    if args.data_root is not None:
        set_data_root(cfg, args.data_root, ['test_dataloader'])
    # Weights come from CHECKPOINT through mmclip's loader, not mmengine's load_from.
    cfg.load_from, cfg.resume = None, False
    if args.skip_bad_images:
        skip_bad_images(cfg.test_dataloader.dataset)
    if args.out is not None:
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = evaluators + [dict(type='DumpPredictions', out_file=args.out)]
    test_cfg = {k: v for k, v in (cfg.get('test_cfg') or {}).items() if k != 'fp16'}
    cfg.test_cfg = dict(test_cfg, type='PrecisionTestLoop', precision=args.precision)
    # uint8 batches copy to the GPU faster from pinned memory.
    cfg.test_dataloader.setdefault('pin_memory', torch.cuda.is_available())
    configure_distributed(cfg)
    if args.backend != 'torch':
        from mmclip.deployment import EXPORTED_BACKENDS
        cfg.model = dict(type=EXPORTED_BACKENDS[args.backend].__name__,
                         onnx_file=args.checkpoint, precision=args.precision)
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


def config_and_checkpoint(args: argparse.Namespace) -> Tuple[Config, Union[str, Sequence[str]]]:
    """The config of CONFIG (a file or a zoo name) and the checkpoint source(s) to load."""
    cfg, info = resolve_config(args.config)
    if args.checkpoint is not None:
        return cfg, args.checkpoint
    if info is None or not info.sources:
        raise ValueError(f'CHECKPOINT is missing: {args.config} is a config file, so say which '
                         f'weights to evaluate (only a model-zoo name brings its own).')
    return cfg, info.sources


def run(args: argparse.Namespace) -> dict:
    cfg, checkpoint = config_and_checkpoint(args)
    cfg = merge_args(cfg, args)
    # Before any model or data is loaded: outputs that would be refused at the end.
    check_work_dir(cfg.work_dir)
    if args.out is not None:
        check_output_file(args.out, '--out', 'tools/test.py', is_ours=is_predictions_file)
    init_cpu_process_group(cfg)
    runner = (MMClipRunner if args.verbose else QuietRunner).from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if args.backend != 'torch':
        device = model.NAME  # the exported model's runtime
    else:
        # Every rank loads; for a URL the loader downloads once per node into the cache.
        load_checkpoint(runner.model, checkpoint, strict=True, logger=runner.logger)
        maybe_compile(model, args.compile)
        device = next(model.parameters()).device
    runner.logger.info(f'Evaluating {args.config} on {len(runner.test_loop.dataloader.dataset)} '
                       f'images: device {device}, precision {args.precision}, batch '
                       f'{runner.test_loop.dataloader.batch_size}')
    metrics = runner.test()
    if is_main_process():
        details = osp.join(runner.log_dir, f'{runner.timestamp}.json')
        weights = checkpoint if isinstance(checkpoint, str) else 'its zoo weights'
        runner.logger.info(f'Results of {args.config} with {weights}\n' +
                           format_metrics_table(metrics, details))
        written = [runner.log_dir] + ([args.out] if args.out else [])
        runner.logger.info(f"Written: {', '.join(written)}")
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))

if __name__ == '__main__':
    exit_process(main())
