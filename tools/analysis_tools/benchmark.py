"""Inference speed of a config: model-only, end-to-end from image files, and start-up.

Model-only (default): throughput (images/s, from the median batch time) and latency
p50 / p90 of one batch of random inputs at the config's resolution, after warm-up::

    python tools/analysis_tools/benchmark.py configs/clip/vit-base-p32_pt-64xb64_in1k.py \\
        --batch-size 32 --precision fp32 bf16 --compare-timm

On a CPU every run also gets its share of this CPU's measured multiply-add peak at its
precision (fp32, or bf16 where the CPU has AVX512-BF16), with ``--threads`` threads and the
same ``--timer``: images/s x the multiply-adds of one image through that graph / the peak
(``fma_peak.py`` compiles and runs ``fma_peak.c``; without a C compiler it says so). A ratio
to timm changes from one CPU to the next; this distance to the CPU's own limit does not.

``--compare-timm`` builds the matching timm model (``vit_{base,large,huge}_patch{14,16,32}_clip_*``)
with the SAME weights and times it on the same batch in the same process, alternating
ours and timm's batches so that load from other processes hits both alike; the ratios
(ours / timm at the same precision, and ours / timm fp32) are printed. Several
``--precision`` values are timed in one interleaved run. ``--backend torch onnxruntime``
also exports the model to ONNX (uint8 RGB input, normalisation inside) and times it in
ONNX Runtime (fp32, intra-op threads = ``--threads`` or the usable cores) in the same
interleaved rounds, with its ratio to timm fp32; ``--backend openvino`` times the same
.onnx in OpenVINO (CPU, ``--threads``, at each ``--precision``: fp32 and/or bf16).

End-to-end (``--data DIR``): every image under DIR goes through the config's test
pipeline in ``--num-workers`` DataLoader workers and the model's ``test_step`` (device-side
normalisation, predictions). The time is split into the main process waiting for data
(> 0 means loading starves the model), model time, and the workers' pipeline CPU time.

Start-up (``--startup``): a fresh Python process runs ``tools/test.py``'s own steps (its
imports, config, Runner, checkpoint load, ``runner.test()``) and times each one up to the
first predicted batch. Needs ``--checkpoint`` and an ImageNet-layout ``--data`` folder
(``make_jpeg_folder.py`` writes one)::

    python tools/analysis_tools/benchmark.py CONFIG --startup --checkpoint CKPT --data DIR

``--checkpoint`` loads weights (any format ``mmclip.checkpoint.load_checkpoint`` takes);
without it the weights are random, which does not change the speed.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Dataset

import mmclip  # noqa: F401
from mmclip.apis import get_model
from mmclip.apis.backends import BACKENDS
from mmclip.apis.model_zoo import resolve_config
from mmclip.checkpoint import load_checkpoint
from mmclip.checkpoint.convert import rename_key
from mmclip.cli.launch import (
    ArgumentParser,
    add_cfg_options,
    add_debug_option,
    add_precision_options,
    check_cfg_options,
    debug_requested,
    default_device,
    exit_code_of,
    load_script,
    merge_cfg_options,
)
from mmclip.cli.outputs import check_output_file
from mmclip.registry import TRANSFORMS
from mmclip.utils import (
    amp_precision,
    autocast_context,
    check_device,
    check_precision,
    maybe_compile,
)
from mmclip.utils.cpu import default_num_workers

fma_peak = load_script(str(Path(__file__).with_name('fma_peak.py')), 'mmclip_fma_peak')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
# The timm CLIP ViTs with ImageNet-1k fine-tunes: (width, patch) -> (name stem, sizes).
TIMM_CLIP = {(768, 16): ('vit_base_patch16_clip', (224, 384)),
             (768, 32): ('vit_base_patch32_clip', (224, 384, 448)),
             (1024, 14): ('vit_large_patch14_clip', (224, 336)),
             (1280, 14): ('vit_huge_patch14_clip', (224, 336))}
TIMERS = {'wall': time.perf_counter, 'cpu': time.process_time}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description='Model-only, end-to-end and start-up speed of a config.')
    parser.add_argument('config', help='config file path, or a model-zoo name')
    parser.add_argument('--checkpoint', help='weights to load (path or URL; default: random '
                        'weights, which run at the same speed)')
    parser.add_argument('--batch-size', type=int,
                        help="images per batch (default: the config's test_dataloader."
                        "batch_size, which fits the model's size: 64 for ViT-B, 32 for ViT-L, "
                        '16 for ViT-H)')
    add_precision_options(parser, several=True)
    parser.add_argument('--compile', action='store_true', help='torch.compile the models')
    parser.add_argument('--device', default=default_device(),
                        help="where the model runs: 'cpu' or 'cuda[:N]' (default: cuda if "
                        'available, else cpu)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--timer', choices=TIMERS, default='wall',
                        help="'wall' clock, or this process's 'cpu' time (CPU only: with "
                        "--threads 1 it is the single-core speed, and load from other "
                        "processes barely changes it)")
    parser.add_argument('--warmup', type=int, default=3, help='untimed batches per run')
    parser.add_argument('--iters', type=int, default=10, help='timed batches per run')
    parser.add_argument('--backend', nargs='+', choices=BACKENDS,
                        default=['torch'],
                        help='model-only runs: torch, ONNX Runtime and/or OpenVINO')
    parser.add_argument('--compare-timm', action='store_true',
                        help='time the matching timm model with the same weights')
    parser.add_argument('--data', help='folder of images for the end-to-end run')
    parser.add_argument('--num-workers', type=int, default=default_num_workers(),
                        help='DataLoader workers for --data (default: %(default)s)')
    parser.add_argument('--max-images', type=int, help='stop --data after this many images')
    parser.add_argument('--startup', action='store_true',
                        help='time imports, build, checkpoint load and first batch in a '
                        'fresh process')
    parser.add_argument('--out', help='write the results to this JSON file')
    add_cfg_options(parser, 'model.head.num_classes=10')
    add_debug_option(parser)
    parser.add_argument('--startup-child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        check_device(args.device)
    except ValueError as err:
        parser.error(f'--device {args.device}: {err}')
    if args.amp:
        args.precision = [amp_precision(args.device)]
    for precision in args.precision:
        try:
            check_precision(precision, args.device)
        except ValueError as err:
            parser.error(f'--precision {precision}: {err}')
    check_cfg_options(args.cfg_options)
    if 'openvino' in args.backend and (torch.device(args.device).type != 'cpu'
                                       or 'fp16' in args.precision):
        parser.error('--backend openvino runs on --device cpu in fp32 and/or bf16')
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: no CUDA device is available; use --device cpu')
    if args.timer == 'cpu' and torch.device(args.device).type != 'cpu':
        parser.error('--timer cpu measures this process\'s CPU time: use it with --device cpu')
    if args.batch_size is None:
        cfg = config_with_options(args.config, args.cfg_options)
        args.batch_size = cfg.test_dataloader.batch_size
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        parser.error('--batch-size and --iters must be >= 1 and --warmup >= 0')
    if args.data and not Path(args.data).is_dir():
        parser.error(f'--data {args.data}: not a directory')
    if args.startup and not (args.checkpoint and args.data):
        parser.error('--startup runs tools/test.py\'s steps: it needs --checkpoint and --data '
                     '(an ImageNet-layout folder: val/*.JPEG and meta/val.txt, as '
                     'make_jpeg_folder.py writes)')
    return args


# ---- model building ------------------------------------------------------------------
def config_with_options(spec: str, cfg_options: Optional[dict]) -> Config:
    cfg = resolve_config(spec)[0]
    merge_cfg_options(cfg, cfg_options)
    return cfg


def timm_twin(model: torch.nn.Module) -> torch.nn.Module:
    """The timm CLIP ViT of the same patch size and resolution, with ``model``'s weights.

    Every timm key is renamed with mmclip's conversion table and every mmclip tensor must
    be consumed, so both models run exactly the same numbers.
    """
    import timm  # only here: mmclip does not need timm

    backbone = model.backbone
    patch, size = backbone.patch_size, backbone.img_size
    stem, sizes = TIMM_CLIP.get((backbone.embed_dims, patch), (None, ()))
    if size not in sizes:
        raise ValueError(f'--compare-timm: timm has no CLIP ViT of width {backbone.embed_dims}, '
                         f'patch {patch} at {size} px; it has {TIMM_CLIP}')
    name = f'{stem}_{size}'
    twin = timm.create_model(name, pretrained=False, num_classes=model.head.num_classes)
    ours = model.state_dict()
    names = {key: rename_key(key) for key in twin.state_dict()}
    missing = sorted(f'{k} -> {v}' for k, v in names.items() if v not in ours)
    unused = sorted(set(ours) - set(names.values()))
    if missing or unused:
        raise ValueError(f'{name} and the config do not match: timm keys without an mmclip '
                         f'tensor {missing}; mmclip keys timm does not use {unused}')
    twin.load_state_dict({k: ours[v] for k, v in names.items()}, strict=True)
    return twin.to(next(model.parameters()).device).eval()


# ---- model-only timing -------------------------------------------------------------
def synchronize(device: str) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def forward_fn(model: torch.nn.Module, x: torch.Tensor, device: str,
               precision: str) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode(), autocast_context(device, precision):
            model(x)
        synchronize(device)
    return run


def time_interleaved(runs: Dict[str, Callable[[], None]], warmup: int, iters: int,
                     clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """Seconds per batch of each run; the order alternates so drift hits all alike."""
    names = list(runs)
    progress = ProgressBar((warmup + iters) * len(names))
    times = {name: [] for name in names}
    for i in range(warmup + iters):
        for name in (names if i % 2 == 0 else names[::-1]):
            start = clock()
            runs[name]()
            if i >= warmup:
                times[name].append(clock() - start)
            progress.update()
    sys.stdout.write('\n')
    return times


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(seconds: Sequence[float], batch_size: int) -> dict:
    median = statistics.median(seconds)
    return dict(images_per_s=batch_size / median, best_images_per_s=batch_size / min(seconds),
                p50_ms=1e3 * median, p90_ms=1e3 * percentile(seconds, 0.9),
                batches=len(seconds))


def exported_fns(model: torch.nn.Module, args: argparse.Namespace,
                 work_dir: str) -> Dict[str, Callable[[], None]]:
    """'<runtime> <precision>' -> a batch of random uint8 RGB images (host memory) through
    the model exported to ``work_dir`` once: ONNX Runtime fp32 (its CUDA provider for a
    CUDA ``--device``) and OpenVINO at each ``--precision``, as ``--backend`` asks."""
    from mmclip.deployment import compile_openvino, export_onnx
    from mmclip.deployment.onnxruntime_classifier import create_session
    onnx_file = export_onnx(model.cpu(), Path(work_dir) / 'model.onnx')
    model.to(args.device)
    size = model.backbone.img_size
    images = torch.randint(0, 256, (args.batch_size, 3, size, size), dtype=torch.uint8).numpy()
    runs = {}
    if 'onnxruntime' in args.backend:
        session = create_session(onnx_file, device=args.device, threads=args.threads)
        runs['onnxruntime fp32'] = partial(session.run, None, {'images': images})
    for precision in (args.precision if 'openvino' in args.backend else []):
        request = compile_openvino(onnx_file, args.device, args.threads,
                                   precision).create_infer_request()
        runs[f'openvino {precision}'] = partial(request.infer, {0: images})
    return runs


def benchmark_model(model: torch.nn.Module, args: argparse.Namespace) -> dict:
    size = model.backbone.img_size
    x = torch.randn(args.batch_size, 3, size, size, device=args.device)
    twin = timm_twin(model) if args.compare_timm else None
    macs = {'mmclip': fma_peak.multiply_adds(model, size)}
    models = {'mmclip': maybe_compile(model, args.compile)} if 'torch' in args.backend else {}
    if twin is not None:
        macs['timm'] = fma_peak.multiply_adds(twin, size)
        models['timm'] = maybe_compile(twin, args.compile)
    runs = {f'{name} {precision}': forward_fn(m, x, args.device, precision)
            for precision in args.precision for name, m in models.items()}
    with tempfile.TemporaryDirectory() as work_dir:
        if set(args.backend) - {'torch'}:
            runs.update(exported_fns(model, args, work_dir))
        times = time_interleaved(runs, args.warmup, args.iters, TIMERS[args.timer])
    results = {name: summarize(t, args.batch_size) for name, t in times.items()}
    report = dict(results=results, ratios=timm_ratios(times, args.precision),
                  multiply_adds_per_image=macs)
    if torch.device(args.device).type == 'cpu':
        report['peak'] = add_percent_of_peak(results, macs, args)
    return report


def add_percent_of_peak(results: Dict[str, dict], macs: Dict[str, int],
                        args: argparse.Namespace) -> Dict[str, dict]:
    """Each run's share of this CPU's measured multiply-add peak at its precision (the
    exported graphs do mmclip's work); returns the peaks, or why one is missing."""
    threads = args.threads or torch.get_num_threads()
    peaks = {}
    for precision in sorted({name.split()[-1] for name in results}):
        rate, reason = fma_peak.measure(threads, precision, args.timer)
        peaks[precision] = dict(threads=threads, multiply_adds_per_s=rate, missing=reason)
    for name, result in results.items():
        graph, precision = name.split()[0], name.split()[-1]
        rate = peaks[precision]['multiply_adds_per_s']
        result['percent_of_peak'] = None if rate is None else fma_peak.percent_of_peak(
            result['images_per_s'], macs['timm' if graph == 'timm' else 'mmclip'], rate)
    return peaks


def timm_ratios(times: Dict[str, List[float]], precisions: Sequence[str]) -> Dict[str, dict]:
    """Throughput of ours / timm at the same precision and ours / timm fp32.

    ``paired_median``: the median over rounds of timm's time / ours in the same round
    (the two ran back to back, so load from other processes mostly cancels);
    ``best``: best batch time against best batch time.
    """
    pairs = [(f'mmclip {p}', f'timm {r}') for p in precisions for r in dict.fromkeys([p, 'fp32'])]
    pairs.append(('onnxruntime fp32', 'timm fp32'))
    pairs += [(f'openvino {p}', 'timm fp32') for p in precisions]
    ratios = {}
    for ours_name, theirs_name in pairs:
        ours, theirs = times.get(ours_name), times.get(theirs_name)
        if ours is not None and theirs is not None:
            ratios[f'{ours_name} / {theirs_name}'] = dict(
                paired_median=statistics.median(t / o for o, t in zip(ours, theirs)),
                best=min(theirs) / min(ours))
    return ratios


# ---- end-to-end ------------------------------------------------------------------------
class TimedImageFolder(Dataset):
    """Every image file under ``root`` (sorted) through ``pipeline``; no labels.

    ``__getitem__`` returns ``(packed, seconds)``: the pipeline's output and the time it
    took in the worker, so the loader's CPU cost can be reported apart from waiting.
    """

    def __init__(self, root: str, pipeline: List[dict], max_images: Optional[int] = None):
        self.paths = sorted(str(p) for p in Path(root).rglob('*')
                            if p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
        if not self.paths:
            raise ValueError(f'--data {root}: no image files ({", ".join(IMAGE_SUFFIXES)})')
        self.pipeline = Compose([TRANSFORMS.build(t) for t in pipeline])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        start = time.perf_counter()
        packed = self.pipeline(dict(img_path=self.paths[index]))
        return packed, time.perf_counter() - start


def collate_timed(samples: list):
    packed, seconds = zip(*samples)
    return pseudo_collate(list(packed)), sum(seconds)


def build_loader(cfg: Config, args: argparse.Namespace) -> DataLoader:
    dataset = TimedImageFolder(args.data, cfg.test_dataloader.dataset.pipeline, args.max_images)
    on_cuda = torch.device(args.device).type == 'cuda'
    return DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                      collate_fn=collate_timed, pin_memory=on_cuda,
                      persistent_workers=args.num_workers > 0)


@contextmanager
def stopwatch(totals: Dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    totals[key] += time.perf_counter() - start


def benchmark_end_to_end(model: torch.nn.Module, cfg: Config, args: argparse.Namespace,
                         precision: str) -> dict:
    """Files -> predictions. The first batch (worker start-up, compile) is reported apart."""
    loader = build_loader(cfg, args)
    totals = dict(wait_s=0.0, model_s=0.0, pipeline_cpu_s=0.0)
    progress = ProgressBar(len(loader.dataset))
    start = time.perf_counter()
    batches, first_batch_s, images, labels = iter(loader), None, 0, []
    while True:
        with stopwatch(totals, 'wait_s'):
            batch = next(batches, None)
        if batch is None:
            break
        data, pipeline_s = batch
        with stopwatch(totals, 'model_s'):
            with torch.inference_mode(), autocast_context(args.device, precision):
                predictions = model.test_step(data)
            synchronize(args.device)
        labels += [int(p.pred_label) for p in predictions]
        totals['pipeline_cpu_s'] += pipeline_s
        images += len(data['inputs'])
        progress.update(len(data['inputs']))
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
            start, images = time.perf_counter(), 0
            totals = dict.fromkeys(totals, 0.0)
    sys.stdout.write('\n')
    wall = time.perf_counter() - start
    steady = dict(
        images=images,
        images_per_s=images / wall if images else float('nan'),
        wait_fraction=totals['wait_s'] / wall if images else float('nan'),
        pipeline_ms_per_image=1e3 * totals['pipeline_cpu_s'] / max(images, 1),
        model_ms_per_image=1e3 * totals['model_s'] / max(images, 1),
        **totals)
    return dict(precision=precision, num_workers=args.num_workers,
                batch_size=args.batch_size, first_batch_s=first_batch_s,
                total_images=len(loader.dataset), steady=steady, pred_labels=labels)


def top1_agreement(runs: List[dict]) -> Dict[str, str]:
    """How many images each precision labels as the fp32 run does, e.g. '11/12'."""
    reference = next((r['pred_labels'] for r in runs if r['precision'] == 'fp32'), None)
    if reference is None:
        return {}
    return {r['precision']: f"{sum(a == b for a, b in zip(r['pred_labels'], reference))}"
                            f'/{len(reference)}'
            for r in runs if r['precision'] != 'fp32'}


# ---- start-up ----------------------------------------------------------------------------
class _FirstBatchDone(Exception):
    """Stops ``runner.test()`` once the first batch is predicted."""


class FirstBatchTimer(Hook):
    """Marks when the first test batch has been loaded and when it has been predicted."""

    def __init__(self, mark: Callable[[str], None]) -> None:
        self.mark = mark

    def before_test_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.mark('test loop, dataset, workers: first batch loaded')

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.mark('first batch predicted')
        raise _FirstBatchDone


def import_test_tool():
    """``tools/test.py`` as a module (its imports run; its ``main`` does not)."""
    return load_script(str(Path(__file__).resolve().parents[1] / 'test.py'), 'mmclip_tools_test')


def startup_child(args: argparse.Namespace) -> dict:
    """Runs in a fresh process the steps of ``tools/test.py`` up to its first batch.

    Returns the wall-clock time (``time.time()``) after each step; the parent subtracts
    the time it spawned this process.
    """
    marks = {'python, torch, mmengine, mmclip imports': time.time()}

    def mark(step: str) -> None:
        marks[step] = time.time()

    test_tool = import_test_tool()
    mark('tools/test.py imports')
    with tempfile.TemporaryDirectory() as work_dir:
        test_args = test_tool.parse_args([
            args.config, args.checkpoint, '--work-dir', work_dir, '--cfg-options',
            f'test_dataloader.dataset.data_root={args.data}',
            f'test_dataloader.batch_size={args.batch_size}',
            f'test_dataloader.num_workers={args.num_workers}',
            '--precision', args.precision[0]
        ])
        cfg = test_tool.merge_args(resolve_config(args.config)[0], test_args)
        mark('config')
        runner = test_tool.QuietRunner.from_cfg(cfg)
        mark('Runner: model build, logger, environment info')
        load_checkpoint(runner.model, args.checkpoint, strict=True, logger=runner.logger)
        mark('checkpoint load')
        runner.register_hook(FirstBatchTimer(mark))
        try:
            runner.test()
        except _FirstBatchDone:
            pass
    return marks


def benchmark_startup(argv: Sequence[str]) -> dict:
    """Spawns ``benchmark.py --startup-child`` and turns its marks into step times."""
    child_argv = [a for a in argv if a != '--startup'] + ['--startup-child']
    spawned = time.time()
    result = subprocess.run([sys.executable, __file__, *child_argv], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f'start-up child failed:\n{result.stderr[-4000:]}')
    marks = json.loads(result.stdout.strip().splitlines()[-1])
    steps, previous = {}, spawned
    for step, stamp in marks.items():
        steps[step] = stamp - previous
        previous = stamp
    return dict(steps_s=steps, total_s=previous - spawned)


# ---- reporting ---------------------------------------------------------------------------
def print_model_table(report: dict, args: argparse.Namespace) -> None:
    print(f'\nmodel-only, batch {args.batch_size}, {args.device}, {args.timer} time, '
          f'{torch.get_num_threads()} threads, compile={args.compile}, {args.iters} timed '
          f'batches after {args.warmup} warm-up')
    print(f'{"run":<18}{"images/s":>10}{"best":>10}{"p50 ms":>10}{"p90 ms":>10}'
          f'{"% of peak":>11}')
    for name, r in report['results'].items():
        share = r.get('percent_of_peak')
        print(f'{name:<18}{r["images_per_s"]:>10.1f}{r["best_images_per_s"]:>10.1f}'
              f'{r["p50_ms"]:>10.1f}{r["p90_ms"]:>10.1f}'
              f'{"n/a" if share is None else f"{share:.1f}%":>11}')
    for precision, peak in report.get('peak', {}).items():
        rate = peak['multiply_adds_per_s']
        print(f'{precision} peak, {peak["threads"]} thread(s), {args.timer} time: ' + (
            f'{rate / 1e9:.1f} G multiply-adds/s (fma_peak.c)' if rate else peak['missing']))
    for graph, count in report['multiply_adds_per_image'].items():
        print(f'{graph} graph: {count / 1e9:.2f} G multiply-adds per image')
    if report['ratios']:
        print(f'{"throughput ratio":<34}{"paired median":>15}{"best":>8}')
    for name, ratio in report['ratios'].items():
        print(f'{name:<34}{ratio["paired_median"]:>14.2f}x{ratio["best"]:>7.2f}x')


def print_end_to_end(report: dict) -> None:
    s = report['steady']
    print(f'\nend-to-end {report["precision"]}, batch {report["batch_size"]}, '
          f'{report["num_workers"]} workers, {report["total_images"]} images: first batch '
          f'{report["first_batch_s"]:.2f} s', end='')
    if not s['images']:
        print('; no images after the first batch: use more images for a throughput')
        return
    print(f', then {s["images"]} images at {s["images_per_s"]:.1f} images/s')
    print(f'  waiting for data {s["wait_s"]:.2f} s ({100 * s["wait_fraction"]:.1f}% of wall), '
          f'model {s["model_s"]:.2f} s ({s["model_ms_per_image"]:.1f} ms/image), '
          f'pipeline CPU in workers {s["pipeline_cpu_s"]:.2f} s '
          f'({s["pipeline_ms_per_image"]:.1f} ms/image)')


def print_startup(report: dict) -> None:
    print('\nstart-up in a fresh process (seconds):')
    for step, seconds in report['steps_s'].items():
        print(f'  {step:<45}{seconds:>7.2f}')
    print(f'  {"total":<45}{report["total_s"]:>7.2f}')


REPORT_KEYS = ('config', 'checkpoint', 'device', 'threads', 'timer', 'batch_size', 'compile',
               'torch')


def is_report(path: str) -> bool:
    """Whether ``path`` is a report this tool wrote (``--out`` may then be replaced)."""
    try:
        report = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and tuple(report)[:len(REPORT_KEYS)] == REPORT_KEYS


def run(argv: List[str]) -> None:
    args = parse_args(argv)
    if args.out and not args.startup_child:  # now, not after minutes of timing
        check_output_file(args.out, '--out', 'benchmark.py', is_ours=is_report)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.startup_child:
        print(json.dumps(startup_child(args)))
        return
    report = dict(zip(REPORT_KEYS, (args.config, args.checkpoint, args.device,
                                    torch.get_num_threads(), args.timer, args.batch_size,
                                    args.compile, torch.__version__)))
    if args.startup:
        report['startup'] = benchmark_startup(argv)
        print_startup(report['startup'])
    else:
        cfg = config_with_options(args.config, args.cfg_options)
        model = get_model(cfg, pretrained=args.checkpoint or False, device=args.device)
        report['model_only'] = benchmark_model(model, args)
        print_model_table(report['model_only'], args)
        if args.data:
            runs = [benchmark_end_to_end(model, cfg, args, p) for p in args.precision]
            report['end_to_end'] = runs
            report['top1_agreement_with_fp32'] = top1_agreement(runs)
            for run in runs:
                print_end_to_end(run)
            for precision, agreed in report['top1_agreement_with_fp32'].items():
                print(f'top-1 of {precision} equals fp32 on {agreed} images')
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return exit_code_of(lambda: run(argv), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
