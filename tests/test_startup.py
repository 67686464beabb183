"""Start-up cuts: no matplotlib unless a config draws, no torchvision for the class names."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import write_tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    env = dict(os.environ)
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_imagenet_names_without_importing_torchvision():
    out = _run('import sys, json\n'
               'from mmclip.datasets import imagenet_categories\n'
               'names = imagenet_categories()\n'
               "loaded = 'torchvision' in sys.modules\n"
               'from torchvision.models import ResNet18_Weights\n'
               "same = names == tuple(ResNet18_Weights.IMAGENET1K_V1.meta['categories'])\n"
               'print(json.dumps([loaded, same, len(names)]))\n')
    assert json.loads(out.splitlines()[-1]) == [False, True, 1000]


def test_visualizer_records_as_mmengine_without_matplotlib(tmp_path):
    """The Runner's default visualizer writes the config and scalars mmengine's writes,
    file for file, without importing matplotlib."""
    out = _run(
        'import sys, json\n'
        'import mmclip.engine\n'
        'from mmengine.config import Config\n'
        'from mmengine.visualization import Visualizer\n'
        'from mmclip.registry import VISUALIZERS\n'
        'cfg = Config(dict(model=dict(type="X"), seed=1))\n'
        'def record(vis):\n'
        '    vis.add_config(cfg)\n'
        '    vis.add_scalars({"accuracy/top1": 50.0, "loss": 1.5}, step=3)\n'
        '    vis.add_scalar("lr", 0.1, step=4)\n'
        '    vis.close()\n'
        f'record(VISUALIZERS.build(dict(type="ScalarVisualizer", name="ours", '
        f'vis_backends=[dict(type="LocalVisBackend")], save_dir={str(tmp_path / "ours")!r})))\n'
        'print(json.dumps("matplotlib" in sys.modules))\n'
        f'record(Visualizer(name="theirs", vis_backends=[dict(type="LocalVisBackend")], '
        f'save_dir={str(tmp_path / "theirs")!r}))\n')
    assert json.loads(out.splitlines()[-1]) is False
    for name in ('scalars.json', 'config.py'):
        (ours, ) = (tmp_path / 'ours').glob(f'**/{name}')
        (theirs, ) = (tmp_path / 'theirs').glob(f'**/{name}')
        assert ours.read_text() == theirs.read_text(), name
    assert '"accuracy/top1": 50.0' in ours.parent.joinpath('scalars.json').read_text()


def test_runner_logs_mmengines_environment_and_mmclips_without_matplotlib(tmp_path):
    config = write_tiny_config(tmp_path)
    out = _run('import sys, json\n'
               'from mmengine.config import Config\n'
               'from mmclip.engine import MMClipRunner\n'
               f'cfg = Config.fromfile({str(config)!r})\n'
               f'cfg.work_dir = {str(tmp_path / "work")!r}\n'
               'MMClipRunner.from_cfg(cfg)\n'
               "print(json.dumps('matplotlib' in sys.modules))\n")
    assert json.loads(out.splitlines()[-1]) is False
    (log, ) = (tmp_path / 'work').glob('*/*.log')
    text = log.read_text()
    import mmclip
    for line in (f'PyTorch: {torch.__version__}', 'TorchVision: ', 'MMEngine: ',
                 'PyTorch compiling details', 'Runtime environment:', 'seed: ', 'Config:\n',
                 'mmclip environment:', f'mmclip: {mmclip.__version__}', 'CPU: '):
        assert line in text, line
