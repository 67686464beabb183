"""The CPU's measured multiply-add peak and benchmark.py's share of it."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmclip

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location('fma_peak',
                                              ROOT / 'tools/analysis_tools/fma_peak.py')
fma_peak = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(fma_peak)


def test_share_of_the_peak_is_work_per_second_over_the_peak():
    # 10 images/s x 4e9 multiply-adds = 4e10 of a 8e10 peak.
    assert fma_peak.percent_of_peak(10.0, 4_000_000_000, 8e10) == pytest.approx(50.0)


@pytest.mark.skipif(shutil.which('cc') is None and shutil.which('gcc') is None,
                    reason='no C compiler')
def test_the_probe_measures_a_plausible_fp32_peak():
    rate, reason = fma_peak.measure(1, 'fp32', 'wall', iters=2_000_000)
    assert reason == '' and rate is not None
    # Between one scalar multiply-add per ns and 64 per cycle at 6 GHz.
    assert 1e9 < rate < 64 * 6e9
    assert fma_peak.measure(1, 'fp16') == (None, 'no CPU multiply-add peak for fp16')


def test_without_a_compiler_the_reason_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.setenv('CC', 'no-such-cc')
    fma_peak._binary.cache_clear()
    try:
        assert fma_peak.measure.__wrapped__(1, 'fp32') == (
            None, 'no C compiler (cc / gcc) to build tools/analysis_tools/fma_peak.c')
    finally:
        fma_peak._binary.cache_clear()


def test_multiply_adds_of_a_linear_layer():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 4 * 4, 5, bias=False)

        def forward(self, x):
            return self.fc(x.flatten(1))

    assert fma_peak.multiply_adds(Flat(), 4) == 3 * 4 * 4 * 5


def test_multiply_adds_count_attention():
    """Both products of scaled_dot_product_attention (mmengine's counter skips the op), and
    the ViT-B graphs' totals as timm's and mmclip's (class-token last block) are known."""
    class Attend(torch.nn.Module):
        def forward(self, x):  # x [1, 3, 4, 4] -> q, k, v [1, heads 3, tokens 4, dims 4]
            q = x.reshape(1, 3, 4, 4)
            return torch.nn.functional.scaled_dot_product_attention(q, q * 2, q[..., :2])

    assert fma_peak.multiply_adds(Attend(), 4) == 3 * 4 * 4 * (4 + 2)
    timm = pytest.importorskip('timm')
    vit = timm.create_model('vit_base_patch32_clip_224', pretrained=False)
    tokens, width, depth = 50, 768, 12
    attention = depth * 2 * tokens * tokens * width
    assert fma_peak.multiply_adds(vit, 224) - attention == pytest.approx(4.368e9, rel=1e-3)
    ours = mmclip.get_model(str(ROOT / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py'))
    assert fma_peak.multiply_adds(ours, 224) == pytest.approx(4.121e9, rel=1e-3)


@pytest.mark.skipif(shutil.which('cc') is None and shutil.which('gcc') is None,
                    reason='no C compiler')
def test_benchmark_reports_each_runs_share_of_the_peak(tmp_path):
    out = tmp_path / 'report.json'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools/analysis_tools/benchmark.py'),
         str(ROOT / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py'), '--device', 'cpu',
         '--batch-size', '1', '--threads', '1', '--warmup', '0', '--iters', '1',
         '--compare-timm', '--out', str(out)],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())['model_only']
    macs = report['multiply_adds_per_image']
    peak = report['peak']['fp32']['multiply_adds_per_s']
    for name in ('mmclip fp32', 'timm fp32'):
        run = report['results'][name]
        expected = 100 * run['images_per_s'] * macs[name.split()[0]] / peak
        assert run['percent_of_peak'] == pytest.approx(expected)
    assert '% of peak' in result.stdout and 'fp32 peak, 1 thread(s), wall time' in result.stdout
