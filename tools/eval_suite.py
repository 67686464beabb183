"""Evaluate one model on a suite of datasets: ImageNet shift sets, zero-shot, retrieval.

    python tools/eval_suite.py MODEL [CHECKPOINT]
        --suite imagenet-shifts|zeroshot|retrieval|NAME[,NAME...]
        --data-root DIR [--root NAME=DIR ...] [--out results.jsonl] [--chart FILE.png]
        [--objectnet-border N]
        [--batch-size N] [--num-workers N] [--device cpu|cuda] [--debug]

MODEL is a model-zoo name or a config file; CHECKPOINT a local file or URL (default, after
a zoo name: its published weights). Each dataset is read from ``DIR/<its folder>`` (the
name its archive extracts to; see docs/eval_suite.md) or from the folder given by
``--root NAME=DIR``. Every dataset's layout is checked before any is evaluated: a missing
or mis-laid one is an ``ERROR:`` line saying the layout expected. Numbers are computed as
clip_benchmark computes them and appended to ``--out`` as one JSON line per dataset
(clip_benchmark's result format); datasets already there for the same model, weights and
protocol options are not evaluated again, so a killed run resumes. The run ends with a
markdown table. ``tools/dist_launch.sh N eval_suite.py ...`` runs N processes (one per
GPU, or CPU processes with gloo): each computes a share of every dataset, the numbers are
those of one process, and rank 0 writes them.
"""
import argparse
import datetime
import os
import sys
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_gather_object, broadcast_object_list, init_dist, is_main_process

import mmclip
from mmclip.apis.model_zoo import is_zero_shot, resolve_config
from mmclip.cli.launch import (
    DEFAULT_DIST_TIMEOUT_S,
    LAUNCHERS,
    ArgumentParser,
    add_debug_option,
    debug_requested,
    exit_code_of,
    exit_process,
)
from mmclip.cli.outputs import make_parent_folder
from mmclip.datasets import DatasetLayoutError
from mmclip.datasets.imagenet_shifts import OBJECTNET_BORDER
from mmclip.evaluation import suite as S


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help='model-zoo name or config file')
    parser.add_argument('checkpoint', nargs='?',
                        help="checkpoint path or URL (default, after a zoo name: its weights)")
    parser.add_argument('--suite', required=True,
                        help=f"{' | '.join(S.SUITES)} | a comma-separated list of "
                        f"{', '.join(S.SUITE_DATASETS)}")
    parser.add_argument('--data-root', default='data',
                        help='folder holding each dataset in its own subfolder '
                        '(docs/eval_suite.md names them)')
    parser.add_argument('--root', action='append', default=[], metavar='NAME=DIR',
                        help='the folder of dataset NAME, instead of DATA_ROOT/<its folder>; '
                        'repeat for several')
    parser.add_argument('--out', default='eval_suite_results.jsonl',
                        help='JSON-lines results file: appended to, and read to skip the '
                        'datasets already evaluated with this model and checkpoint')
    parser.add_argument('--chart', metavar='FILE.png',
                        help='also draw the results as bars, measured beside published '
                        '(replaces only a chart this tool wrote)')
    parser.add_argument('--objectnet-border', type=int, default=OBJECTNET_BORDER,
                        help="pixels cropped from each side of ObjectNet's images (its red "
                        "frame; WiSE-FT crops 2, clip_benchmark 1.6.2 and so open_clip's "
                        'published ObjectNet numbers 0)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='set by tools/dist_launch.sh (pytorch) or a Slurm job: each '
                        'process computes a share of every dataset, rank 0 writes')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.num_workers < 0 or args.objectnet_border < 0:
        parser.error('--batch-size must be >= 1, --num-workers and --objectnet-border >= 0')
    return args


def dataset_roots(args: argparse.Namespace, names) -> Dict[str, str]:
    """Each dataset's folder: ``--root NAME=DIR``, else ``DATA_ROOT/<its folder>``."""
    given = {}
    for item in args.root:
        name, sep, folder = item.partition('=')
        if not sep or name not in S.SUITE_DATASETS or not folder:
            raise ValueError(f'--root {item!r}: expected NAME=DIR with NAME one of '
                             f'{", ".join(S.SUITE_DATASETS)}.')
        given[name] = folder
    return {n: given.get(n, os.path.join(args.data_root, S.SUITE_DATASETS[n].folder))
            for n in names}


def dataset_options(args: argparse.Namespace, name: str) -> dict:
    """Protocol options of dataset ``name`` (recorded in its result line)."""
    return dict(border=args.objectnet_border) if name == 'objectnet' else {}


def init_distributed(launcher: str) -> None:
    """Join the job's process group: NCCL on GPUs, gloo on the CPU (torchrun only)."""
    if launcher == 'none':
        return
    timeout = datetime.timedelta(seconds=DEFAULT_DIST_TIMEOUT_S)
    if torch.cuda.is_available():
        init_dist(launcher, backend='nccl', timeout=timeout)
    elif launcher == 'pytorch':
        torch.distributed.init_process_group(backend='gloo', timeout=timeout)
    else:
        raise ValueError(f'--launcher {launcher} needs CUDA; on the CPU use '
                         'tools/dist_launch.sh (--launcher pytorch).')


def check_layouts(names, roots: Dict[str, str], pipeline,
                  args: argparse.Namespace) -> Optional[Dict[str, object]]:
    """Every dataset, built by every process (a listing: no image is decoded); None, in
    every process, after one ``ERROR:`` line per dataset missing or mis-laid anywhere."""
    datasets, errors = {}, []
    for name in names:
        options = dataset_options(args, name)
        try:
            datasets[name] = S.build_dataset(S.SUITE_DATASETS[name], roots[name], pipeline,
                                             **options)
        except DatasetLayoutError as err:
            errors.append(f'ERROR: {name} (from {roots[name]}): {err}')
    everywhere = [e for rank_errors in all_gather_object(errors) for e in rank_errors]
    if is_main_process():
        for line in dict.fromkeys(everywhere):  # once, however many processes saw it
            print(line, file=sys.stderr)
    return None if everywhere else datasets


def run(args: argparse.Namespace) -> int:
    names = S.suite_names(args.suite)
    if args.chart:
        S.check_chart_file(args.chart)  # now, not after hours of evaluation
    init_distributed(args.launcher)
    writer = is_main_process()
    pretrained = args.checkpoint or 'zoo'
    keys = {S.result_key(dict(dataset=n, model=args.model, pretrained=pretrained,
                              options=dataset_options(args, n))): n for n in names}
    # Rank 0 owns --out (other nodes may not see it): it decides, the others follow.
    done = {S.result_key(r) for r in S.read_results(args.out)} if writer else set()
    if writer:
        make_parent_folder(args.out, '--out')
        if args.chart:
            make_parent_folder(args.chart, '--chart')
    todo = [[n for key, n in keys.items() if key not in done]]
    broadcast_object_list(todo)
    todo = todo[0]
    cfg, _ = resolve_config(args.model)
    needs_text = [n for n in todo if S.SUITE_DATASETS[n].needs_text]
    if needs_text and not is_zero_shot(args.model):
        raise ValueError(f'{args.model} has no text tower; {", ".join(needs_text)} need a '
                         f'zero-shot model: {mmclip.list_models("*zeroshot*")}.')
    # Layouts first: a mis-laid dataset should not wait for a model download.
    datasets = check_layouts(todo, dataset_roots(args, todo),
                             cfg.test_dataloader.dataset.pipeline, args)
    if datasets is None:
        return 1
    say = print if writer else (lambda *a, **k: None)
    for skipped in (n for n in names if n not in todo):
        say(f'{skipped}: already in {args.out}, not evaluated again')
    # Built only when there is something to evaluate (a zoo name may mean a download).
    model = todo and mmclip.get_model(args.model, pretrained=args.checkpoint or True,
                                      device=args.device)
    for i, name in enumerate(todo, 1):
        spec, dataset = S.SUITE_DATASETS[name], datasets[name]
        say(f'[{i}/{len(todo)}] {name}: {len(dataset)} images')
        if spec.num_images is not None and len(dataset) != spec.num_images:
            say(f'WARNING: {name} has {len(dataset)} images; the published set has '
                f'{spec.num_images}, so its numbers will not compare with published ones.')
        metrics = S.evaluate(model, spec, dataset, args.batch_size, args.num_workers,
                             S.Progress(name, write=say))
        if writer:
            S.append_result(args.out, S.result_line(spec, args.model, pretrained, metrics,
                                                    len(dataset), dataset_options(args, name)))
    if writer:
        records = [r for r in S.read_results(args.out) if S.result_key(r) in keys]
        print(f'\n{args.model} ({pretrained}), results in {args.out}:\n')
        records.sort(key=lambda r: names.index(r['dataset']))
        print(S.markdown_table(records))
        if args.chart:
            S.write_chart(records, args.chart, f'{args.model} ({pretrained})')
            print(f'Chart: {args.chart}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    exit_process(main())
