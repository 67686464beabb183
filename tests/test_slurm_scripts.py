"""The Slurm launchers hand srun the right task layout and the tools' arguments.

No Slurm here: a stand-in ``srun`` on PATH records its argument list.
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_srun(tmp_path):
    record = tmp_path / 'srun_args'
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n'
                    f'echo "$OMP_NUM_THREADS $MKL_NUM_THREADS" > {record}.threads\n')
    srun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.endswith('_NUM_THREADS')}
    env = dict(env, PATH=f'{srun.parent}{os.pathsep}{os.environ["PATH"]}', GPUS='16',
               SRUN_ARGS='--quotatype=spot')
    return env, record


def run(script: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(ROOT / 'tools' / script), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_slurm_test_passes_layout_and_arguments(fake_srun):
    env, record = fake_srun
    result = run('slurm_test.sh', env, 'gpu', 'eval', 'cfg.py', 'ckpt.pth', '--out', 'p.json')
    assert result.returncode == 0, result.stderr
    args = record.read_text().split('\n')[:-1]
    assert args[:9] == ['-p', 'gpu', '--job-name=eval', '--gres=gpu:8', '--ntasks=16',
                        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                        '--quotatype=spot']
    assert args[9:11] == ['python', '-u'] and args[11].endswith('tools/test.py')
    assert args[12:] == ['cfg.py', 'ckpt.pth', '--out', 'p.json', '--launcher', 'slurm']


def test_slurm_train_takes_an_optional_work_dir(fake_srun):
    env, record = fake_srun
    assert run('slurm_train.sh', env, 'gpu', 'ft', 'cfg.py', 'work', '--resume').returncode == 0
    args = record.read_text().split('\n')[:-1]
    assert args[11].endswith('tools/train.py')
    assert args[12:] == ['cfg.py', '--work-dir', 'work', '--resume', '--launcher', 'slurm']
    assert run('slurm_train.sh', env, 'gpu', 'ft', 'cfg.py', '--amp').returncode == 0
    assert record.read_text().split('\n')[12:-1] == ['cfg.py', '--amp', '--launcher', 'slurm']


def test_threads_default_to_one_and_keep_the_users_choice(fake_srun):
    env, record = fake_srun
    threads = Path(f'{record}.threads')
    assert run('slurm_test.sh', env, 'gpu', 'eval', 'cfg.py', 'ckpt.pth').returncode == 0
    assert threads.read_text() == '1 1\n'  # mmengine warns from every task when unset
    assert run('slurm_test.sh', dict(env, OMP_NUM_THREADS='4'), 'gpu', 'eval', 'cfg.py',
               'ckpt.pth').returncode == 0
    assert threads.read_text() == '4 4\n'


@pytest.mark.parametrize('script,count', [('slurm_test.sh', 4), ('slurm_train.sh', 3),
                                          ('dist_test.sh', 3), ('dist_train.sh', 2)])
def test_too_few_arguments_print_usage(script, count, fake_srun):
    result = run(script, fake_srun[0], *['x'] * (count - 1))
    assert result.returncode == 2 and result.stderr.startswith('usage:')
