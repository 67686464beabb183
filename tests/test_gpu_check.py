"""The GPU check's CPU rehearsal: the exact script a GPU machine runs, at smoke sizes."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'tools/analysis_tools/gpu_check.sh'
SMOKE = dict(DEVICE='cpu', PRECISIONS='fp32', BATCH='2', WARMUP='0', ITERS='1',
             NUM_IMAGES='8', SKIP_COMPILE='1', WORKERS='0')


def probe_wheel(folder: Path) -> Path:
    """A wheel of one module, made here (no index): stands in for the carried wheels."""
    folder.mkdir()
    path = folder / 'mmclip_gpu_probe-1.0-py3-none-any.whl'
    dist = 'mmclip_gpu_probe-1.0.dist-info'
    with zipfile.ZipFile(path, 'w') as wheel:
        wheel.writestr('mmclip_gpu_probe.py', 'VALUE = 42\n')
        wheel.writestr(f'{dist}/METADATA',
                       'Metadata-Version: 2.1\nName: mmclip-gpu-probe\nVersion: 1.0\n')
        wheel.writestr(f'{dist}/WHEEL', 'Wheel-Version: 1.0\nGenerator: test\n'
                       'Root-Is-Purelib: true\nTag: py3-none-any\n')
        wheel.writestr(f'{dist}/RECORD', '')
    return folder


def run_check(tmp_path: Path, wheels: Path, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHON=sys.executable, IMAGES=str(ROOT / 'tests/data/images'),
                       DATA=str(tmp_path / 'jpeg'), TARGET=str(tmp_path / 'site'), **env)
    environment.pop('PYTHONPATH', None)
    return subprocess.run(['bash', str(SCRIPT), str(tmp_path / 'out'), str(wheels)], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)


def steps(tmp_path: Path) -> dict:
    lines = (tmp_path / 'out' / 'steps.jsonl').read_text().splitlines()
    return {record['step']: record for record in map(json.loads, lines)}


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_and_reports_each(tmp_path):
    result = run_check(tmp_path, probe_wheel(tmp_path / 'wheels'), **SMOKE)
    assert result.returncode == 0, result.stderr
    report = steps(tmp_path)
    assert list(report) == ['machine', 'install', 'imports', 'cuda_tests', 'benchmark',
                            'dist_test']
    assert {k: v['status'] for k, v in report.items()} == dict(
        machine='ok', install='ok', imports='ok', cuda_tests='ok', benchmark='ok',
        dist_test='skipped'), result.stdout
    assert sum(v['limit_s'] for v in report.values()) <= 480
    # Installed into the target folder only: this interpreter cannot import the probe.
    assert (tmp_path / 'site' / 'mmclip_gpu_probe.py').is_file()
    plain = subprocess.run([sys.executable, '-c', 'import mmclip_gpu_probe'],
                           capture_output=True, cwd=tmp_path)
    assert plain.returncode != 0
    assert 'skipped' in (tmp_path / 'out' / 'cuda_tests.log').read_text()
    assert (tmp_path / 'out' / 'benchmark' / 'model_b16.json').is_file()


def test_a_failed_step_does_not_stop_the_next(tmp_path):
    result = run_check(tmp_path, tmp_path / 'no_wheels', STEPS='machine cuda_tests imports',
                       CUDA_TESTS='tests/no_such_test_file.py', DEVICE='cpu')
    assert result.returncode == 0, result.stderr
    assert {k: v['status'] for k, v in steps(tmp_path).items()} == dict(
        machine='ok', cuda_tests='failed', imports='ok')


def test_limits_over_the_budget_refuse_to_start(tmp_path):
    result = run_check(tmp_path, tmp_path, BUDGET='100')
    assert result.returncode == 2
    assert result.stderr.strip().startswith('ERROR: the steps\' limits add up to 480 s')
    assert not (tmp_path / 'out' / 'steps.jsonl').exists()
