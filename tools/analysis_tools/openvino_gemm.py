"""How close OpenVINO's CPU plugin runs a ViT-B's matrix products, alone, to the FMA peak.

    python tools/analysis_tools/openvino_gemm.py --tokens 800 --threads 1

An exported ViT-B spends about 90% of its OpenVINO time in ``FullyConnected`` layers (its
profile: ``PERF_COUNT``), so their speed alone bounds the whole graph's. For each
projection of a ViT-B block ([tokens, 768] x [768, 2304] qkv, x [768, 768] out,
x [768, 3072] fc1, [tokens, 3072] x [3072, 768] fc2) this builds the three patterns the
exported graph holds, ``x @ W``, ``+ bias`` and ``+ bias`` then GELU (erf), each as an
``.onnx`` compiled by ``mmclip.deployment.compile_openvino`` (fp32, one stream), times it in
this process's CPU time, and prints G multiply-adds/s and the share of the fp32 peak that
``fma_peak.c`` measures with the same thread count. ``--tokens``: rows of x (ViT-B/32,
batch 16: 16 x 50 = 800).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from mmclip.cli.launch import (
    ArgumentParser,
    add_debug_option,
    debug_requested,
    exit_code_of,
    load_script,
)
from mmclip.deployment.exported_classifier import require

fma_peak = load_script(str(Path(__file__).with_name('fma_peak.py')), 'mmclip_fma_peak')

# (name, K, N) of a ViT-B block's projections: x [tokens, K] @ W [K, N].
PROJECTIONS = (('qkv', 768, 2304), ('out', 768, 768), ('fc1', 768, 3072), ('fc2', 3072, 768))
PATTERNS = ('x @ W', '+ bias', '+ bias, GELU')
SECONDS_PER_CASE = 0.5


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description="Time OpenVINO's fp32 matrix products of a ViT-B block alone.")
    parser.add_argument('--tokens', type=int, default=800, help='rows of x (batch x tokens)')
    parser.add_argument('--threads', type=int, default=1, help='OpenVINO inference threads')
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if min(args.tokens, args.threads) < 1:
        parser.error('--tokens and --threads must be >= 1')
    return args


def projection_onnx(path: Path, tokens: int, k: int, n: int, pattern: str) -> Path:
    """An .onnx of ``pattern`` on x [tokens, k] with random W [k, n] and bias [n]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((k, n)) * 0.02).astype(np.float32),
                                       'W')]
    nodes = [helper.make_node('MatMul', ['x', 'W'], ['y0'])]
    if pattern != 'x @ W':
        weights.append(numpy_helper.from_array(
            (rng.standard_normal(n) * 0.02).astype(np.float32), 'b'))
        nodes.append(helper.make_node('Add', ['y0', 'b'], ['y1']))
    if pattern == '+ bias, GELU':
        nodes.append(helper.make_node('Gelu', ['y1'], ['y2'], approximate='none'))
    graph = helper.make_graph(
        nodes, 'projection', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [tokens, k])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [tokens, n])],
        initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 20)]), path)
    return path


def multiply_adds_per_s(onnx_file: Path, tokens: int, k: int, n: int, threads: int) -> float:
    """x [tokens, k] @ W [k, n]'s multiply-adds per second of CPU time, the compiled
    model run repeatedly for about ``SECONDS_PER_CASE`` after two warm-up runs."""
    from mmclip.deployment import compile_openvino
    compiled = compile_openvino(onnx_file, threads=threads)
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal((tokens, k)).astype(np.float32)
    for _ in range(2):
        request.infer({0: x})
    runs, start = 0, time.process_time()
    while time.process_time() - start < SECONDS_PER_CASE:
        request.infer({0: x})
        runs += 1
    return runs * tokens * k * n / (time.process_time() - start)


def run(args: argparse.Namespace) -> None:
    require('openvino', 'onnx', extra='openvino')
    peak, why = fma_peak.measure(args.threads, 'fp32', 'cpu')
    rows: List[Tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, k, n in PROJECTIONS:
            for i, pattern in enumerate(PATTERNS):
                onnx_file = projection_onnx(Path(folder) / f'{name}_{i}.onnx', args.tokens, k,
                                            n, pattern)
                rows.append((f'{name} [{args.tokens}, {k}] x [{k}, {n}]', pattern,
                             multiply_adds_per_s(onnx_file, args.tokens, k, n, args.threads)))
    print(f'OpenVINO fp32, {args.threads} thread(s), CPU time')
    print(f"{'projection':34s} {'pattern':14s} {'G MAC/s':>8s} {'% of peak':>10s}")
    for projection, pattern, rate in rows:
        share = f'{100 * rate / peak:9.1f}%' if peak else '         -'
        print(f'{projection:34s} {pattern:14s} {rate / 1e9:8.1f} {share}')
    print(f'fp32 peak: {peak / 1e9:.1f} G multiply-adds/s (fma_peak.c)' if peak else
          f'fp32 peak: not measured ({why})')


def main(argv: Optional[Sequence[str]] = None) -> int:
    return exit_code_of(lambda: run(parse_args(argv)), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
