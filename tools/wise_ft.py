"""WiSE-FT: weight-space ensembles of a zero-shot and a fine-tuned CLIP classifier.

    python tools/wise_ft.py ZERO_SHOT FINE_TUNED --out DIR [--alphas 0 0.1 ... 1]
        [--eval CONFIG [CONFIG ...]] [--metric accuracy/top1] [--debug]

For each alpha, the checkpoint ``(1 - alpha) * ZERO_SHOT + alpha * FINE_TUNED`` over every
weight, as Wortsman et al. do ("Robust fine-tuning of zero-shot models",
arXiv:2109.01903; github.com/mlfoundations/wise-ft ``src/wise_ft.py``): both checkpoints
must hold the same parameter names and shapes, and the head is interpolated as any other
weight. That is meaningful because the fine-tuned head started from the zero-shot one
(``CLIPLinearClsHead`` initialised by ``ZeroShotInitHook`` or
tools/model_converters/zeroshot_to_classifier.py, which also writes ZERO_SHOT). For
classifiers that keep a text tower (FLYP), the text tower and the logit scale are
interpolated too, and the class embeddings, which are derived from them, are left out
and rebuilt from the interpolated tower when the checkpoint is loaded (as is FLYP's step
counter). Other tensors that are not floating point are taken from FINE_TUNED. alpha 0
gives ZERO_SHOT and alpha 1 FINE_TUNED bit for bit.

DIR receives ``wise_ft_alpha_<alpha>.pth`` (``state_dict`` and ``meta``), the record
``wise_ft.json`` (the files this tool wrote with their SHA-256, and the metrics), and, with
two or more ``--eval`` configs, ``wise_ft_curve.png``. Every file is written whole or
not at all, and the tool refuses to write over a file it did not write (one not in the
record, or changed since), so a second run into the same DIR (more alphas) is safe.

``--eval``: configs whose model is the classifier (e.g. the fine-tuning config itself) and
whose ``test_dataloader`` is the set to measure; the first is in-distribution, the others
are distribution shifts. Each interpolated checkpoint is evaluated as ``tools/test.py
CONFIG CHECKPOINT`` does (``evaluate``, the hook an evaluation suite replaces), the
metrics are printed as a table, and the curve plots in-distribution ``--metric`` against
its mean over the shifts, alpha on each point, the zero-shot (alpha 0) and fine-tuned
(alpha 1) end points marked.
"""
import argparse
import functools
import hashlib
import json
import os.path as osp
import secrets
import sys
from typing import IO, Callable, Dict, List, Optional, Sequence

import torch

import mmclip  # noqa: F401  (registers mmclip's modules)
from mmclip.checkpoint.loader import load_state_dict_from_source
from mmclip.cli.launch import (
    ArgumentParser,
    add_debug_option,
    debug_requested,
    exit_code_of,
    load_script,
)
from mmclip.cli.outputs import check_work_dir
from mmclip.models.classifiers import FLYPClassifier
from mmclip.utils.atomic_file import atomic_write

DEFAULT_ALPHAS = [round(0.1 * i, 1) for i in range(11)]
RECORD = 'wise_ft.json'
CURVE = 'wise_ft_curve.png'
# Tensors the models derive themselves when a checkpoint lacks them (the class embeddings
# of a text tower, FLYP's step counter): interpolating the embeddings would pair the
# interpolated text tower with a head it did not build.
DERIVED_KEYS = tuple(FLYPClassifier.derived_state_keys)
StateDict = Dict[str, torch.Tensor]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='WiSE-FT weight-space ensembles.')
    parser.add_argument('zero_shot', help='the zero-shot classifier checkpoint (path or URL)')
    parser.add_argument('fine_tuned', help='the fine-tuned checkpoint of the same model')
    parser.add_argument('--out', required=True, help='output folder (created if missing)')
    parser.add_argument('--alphas', type=float, nargs='+', default=DEFAULT_ALPHAS,
                        help='mixing coefficients in [0, 1]: 0 is ZERO_SHOT, 1 FINE_TUNED')
    parser.add_argument('--eval', nargs='+', default=[], metavar='CONFIG',
                        help='evaluate each checkpoint on these configs\' test sets: the '
                        'first in-distribution, the others distribution shifts')
    parser.add_argument('--metric', default='accuracy/top1',
                        help='the metric the table and the curve show')
    add_debug_option(parser)
    args = parser.parse_args(argv)
    bad = [a for a in args.alphas if not 0.0 <= a <= 1.0]
    if bad:
        parser.error(f'--alphas must lie in [0, 1]; got {bad}')
    args.alphas = sorted(set(args.alphas))
    return args


# ---- the ensembles -------------------------------------------------------------------------
def read_weights(source: str) -> StateDict:
    """The mmclip-keyed state dict of ``source``, derived keys left out."""
    state = load_state_dict_from_source(source)
    return {k: v for k, v in state.items() if k not in DERIVED_KEYS}


def check_compatible(theta_0: StateDict, theta_1: StateDict) -> None:
    """Same names, shapes and kinds of tensor, finite weights: else one line naming them."""
    only_0 = sorted(theta_0.keys() - theta_1.keys())
    only_1 = sorted(theta_1.keys() - theta_0.keys())
    if only_0 or only_1:
        raise ValueError(f'ZERO_SHOT and FINE_TUNED must hold the same parameter names; only in '
                         f'ZERO_SHOT: {only_0[:5]}, only in FINE_TUNED: {only_1[:5]} (is '
                         f'ZERO_SHOT the zero-shot classifier of tools/model_converters/'
                         f'zeroshot_to_classifier.py?).')
    for key, a in theta_0.items():
        b = theta_1[key]
        if a.shape != b.shape or a.is_floating_point() != b.is_floating_point():
            raise ValueError(f'{key}: ZERO_SHOT has {a.dtype} {tuple(a.shape)}, FINE_TUNED '
                             f'{b.dtype} {tuple(b.shape)}; expected the same shape and kind.')
        for name, t in (('ZERO_SHOT', a), ('FINE_TUNED', b)):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f'{name}: {key} holds NaN or Inf values.')


def interpolate(theta_0: StateDict, theta_1: StateDict, alpha: float) -> StateDict:
    """``(1 - alpha) * theta_0 + alpha * theta_1`` per floating-point tensor, computed in
    float32 at least and stored in FINE_TUNED's dtype (exact at alpha 0 and 1); other
    tensors from ``theta_1``."""
    out = {}
    for key, b in theta_1.items():
        if not b.is_floating_point():
            out[key] = b.clone()
            continue
        dtype = torch.promote_types(b.dtype, torch.float32)
        mixed = (1 - alpha) * theta_0[key].to(dtype) + alpha * b.to(dtype)
        out[key] = mixed.to(b.dtype)
    return out


# ---- the output folder ---------------------------------------------------------------------
def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class OutputFolder:
    """DIR and its record of what this tool wrote there (file name -> SHA-256)."""

    def __init__(self, path: str) -> None:
        check_work_dir(path, '--out')
        self.path = path
        self.record = self._read_record()

    def _read_record(self) -> dict:
        path = osp.join(self.path, RECORD)
        if not osp.lexists(path):
            return dict(written={}, results={})
        try:
            with open(path, encoding='utf-8') as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = None
        if not (isinstance(record, dict) and isinstance(record.get('written'), dict)
                and isinstance(record.get('results'), dict)):
            raise ValueError(f'{path} exists and is not a record of tools/wise_ft.py; refusing '
                             f'to write over it. Choose another --out folder.')
        return record

    def check_writable(self, name: str) -> None:
        """Refuse ``name`` if a file there was not written by this tool, or changed since."""
        target = osp.join(self.path, name)
        if not osp.lexists(target):
            return
        known = self.record['written'].get(name)
        if known is None or not osp.isfile(target) or sha256_file(target) != known:
            raise ValueError(f'{target} exists and was not written by tools/wise_ft.py (or was '
                             f'changed since); refusing to write over it. Choose another '
                             f'--out folder or move the file.')

    def write(self, name: str, write: Callable[[IO], None]) -> str:
        """Write ``name`` atomically through ``write(file)`` and record it."""
        self.check_writable(name)
        target = osp.join(self.path, name)
        with atomic_write(target) as f:
            write(f)
        self.record['written'][name] = sha256_file(target)
        self.save_record()
        return target

    def save_record(self) -> None:
        with atomic_write(osp.join(self.path, RECORD), 'w') as f:
            json.dump(self.record, f, indent=1, sort_keys=True)


def checkpoint_name(alpha: float) -> str:
    return f'wise_ft_alpha_{alpha:.3f}.pth'


# ---- evaluation and the curve --------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _load_tool(name: str):
    return load_script(osp.join(osp.dirname(osp.abspath(__file__)), f'{name}.py'),
                       f'mmclip_tools_{name}')


def evaluate(config: str, checkpoint: str, work_dir: str, run_name: str) -> Dict[str, float]:
    """The metrics of ``checkpoint`` on ``config``'s test set, as ``tools/test.py CONFIG
    CHECKPOINT --work-dir WORK_DIR`` computes them.

    This is the evaluation hook: an evaluation suite that knows the ImageNet shift sets
    (class subsets of ImageNet-A / -R, ObjectNet's mapping) replaces this function (or
    provides configs whose test set and metric do it), and the rest of the tool stays.
    """
    test_tool = _load_tool('test')
    args = test_tool.parse_args([config, checkpoint, '--work-dir', work_dir,
                                 '--cfg-options', f'experiment_name={run_name}'])
    return {k: float(v) for k, v in test_tool.run(args).items() if isinstance(v, (int, float))}


def config_label(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def shift_mean(row: Dict[str, float], shifts: Sequence[str]) -> float:
    return sum(row[s] for s in shifts) / len(shifts)


def metrics_table(results: Dict[str, Dict[str, float]], labels: Sequence[str],
                  metric: str) -> str:
    """alpha | one column per config | the shifts' mean (with two or more configs)."""
    columns = list(labels) + (['shift mean'] if len(labels) > 1 else [])
    rows = [' | '.join(['alpha'] + columns)]
    for alpha, row in results.items():
        values = [row[label] for label in labels]
        if len(labels) > 1:
            values.append(shift_mean(row, labels[1:]))
        rows.append(' | '.join([alpha] + [f'{v:.2f}' for v in values]))
    return f'{metric}:\n' + '\n'.join(rows)


def draw_curve(results: Dict[str, Dict[str, float]], labels: Sequence[str], metric: str,
               file: IO) -> None:
    """In-distribution ``metric`` (x) against the mean over the shifts (y), one point per
    alpha joined in alpha order, the alpha 0 and 1 end points marked; PNG into ``file``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    alphas = sorted(results, key=float)
    x = [results[a][labels[0]] for a in alphas]
    y = [shift_mean(results[a], labels[1:]) for a in alphas]
    figure = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(x, y, '-o', color='tab:blue', markersize=4, label='WiSE-FT')
    for alpha, xi, yi in zip(alphas, x, y):
        axes.annotate(f'{float(alpha):g}', (xi, yi), textcoords='offset points', xytext=(4, 4),
                      fontsize=7)
    ends = {0.0: ('*', 'tab:green', 'zero-shot (alpha 0)'),
            1.0: ('s', 'tab:red', 'fine-tuned (alpha 1)')}
    for alpha, xi, yi in zip(alphas, x, y):
        if float(alpha) in ends:
            marker, color, label = ends[float(alpha)]
            axes.plot([xi], [yi], marker, color=color, markersize=12, label=label)
    axes.set_xlabel(f'{labels[0]} {metric} (in-distribution)')
    axes.set_ylabel(f'mean {metric} over {", ".join(labels[1:])}')
    axes.set_title('WiSE-FT: zero-shot to fine-tuned')
    axes.grid(alpha=0.3)
    axes.legend(loc='best', fontsize=8)
    figure.tight_layout()
    figure.savefig(file, format='png')


# ---- the tool ------------------------------------------------------------------------------
def check_configs(configs: Sequence[str]) -> List[str]:
    missing = [c for c in configs if not osp.isfile(c)]
    if missing:
        raise FileNotFoundError(f'--eval: no such config file: {missing[0]}')
    labels = [config_label(c) for c in configs]
    if len(set(labels)) != len(labels):
        raise ValueError(f'--eval configs must have distinct file names; got {labels}.')
    return labels


def run(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    labels = check_configs(args.eval)
    out = OutputFolder(args.out)
    names = [checkpoint_name(a) for a in args.alphas]
    for name in names + ([CURVE] if len(labels) > 1 else []):
        out.check_writable(name)  # before any work
    theta_0 = read_weights(args.zero_shot)
    theta_1 = read_weights(args.fine_tuned)
    check_compatible(theta_0, theta_1)
    token = secrets.token_hex(3)  # one logger per evaluation in this process
    results: Dict[str, Dict[str, float]] = {}
    for alpha, name in zip(args.alphas, names):
        meta = dict(wise_ft=dict(alpha=alpha, zero_shot=args.zero_shot,
                                 fine_tuned=args.fine_tuned))
        state = interpolate(theta_0, theta_1, alpha)
        path = out.write(name, lambda f: torch.save(dict(state_dict=state, meta=meta), f))
        print(f'alpha {alpha:g}: {path}', flush=True)
        key = f'{alpha:.3f}'
        for config, label in zip(args.eval, labels):
            metrics = evaluate(config, path, osp.join(args.out, 'eval', key, label),
                               f'wise_ft_{token}_{key}_{label}')
            if args.metric not in metrics:
                raise ValueError(f'--metric {args.metric}: {config} reports {sorted(metrics)}.')
            results.setdefault(key, {})[label] = metrics[args.metric]
            out.record['results'].setdefault(key, {})[label] = metrics
            out.save_record()
    if results:
        print(metrics_table(results, labels, args.metric))
    if len(labels) > 1:
        curve = out.write(CURVE, lambda f: draw_curve(results, labels, args.metric, f))
        print(f'Curve: {curve}')
    elif labels:
        print('No curve: it needs an in-distribution and at least one shift config in --eval.')
    return results


def main(argv: Optional[List[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
