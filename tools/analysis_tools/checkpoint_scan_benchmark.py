"""What the opcode scan costs against the whole load of a zoo-sized checkpoint.

    python tools/analysis_tools/checkpoint_scan_benchmark.py \
        vit-base-p16_clip-openai-pre_3rdparty_in1k \
        vit-huge-p14_clip-laion2b-pre_3rdparty_in1k --repeat 5

For each model it saves the randomly initialised weights (the zoo files' keys and shapes)
into a temporary folder, then times, in this process, the scan alone
(``safe_load.scan_checkpoint``) and ``load_checkpoint`` into the model (read, scan, checks,
copy), each the median of ``--repeat`` runs, CPU time of this process (single-threaded
where ``torch.set_num_threads(1)``). Writes a few GB to ``--tmp-dir`` for H/14.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from mmclip import get_model
from mmclip.checkpoint import load_checkpoint
from mmclip.checkpoint.safe_load import scan_checkpoint


def cpu_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='+', help='zoo names or config files')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--tmp-dir', help='where the weights are written (default: system)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    print('| model | file | scan (ms) | load_checkpoint (ms) | scan share |')
    print('| --- | --- | --- | --- | --- |')
    for name in args.models:
        model = get_model(name)
        with tempfile.TemporaryDirectory(dir=args.tmp_dir) as folder:
            path = str(Path(folder) / 'weights.pth')
            torch.save(model.state_dict(), path)
            size = Path(path).stat().st_size
            scan = cpu_seconds(lambda: scan_checkpoint(path), args.repeat)
            load = cpu_seconds(lambda: load_checkpoint(model, path, logger='silent'),
                               args.repeat)
        print(f'| {name} | {size / 2 ** 20:.0f} MiB | {scan * 1e3:.1f} | {load * 1e3:.0f} | '
              f'{100 * scan / load:.2f}% |')


if __name__ == '__main__':
    main()
