"""Start-up cuts: nothing imports matplotlib or torchvision unless it draws or needs them."""
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


def test_visualizer_logs_scalars_without_matplotlib_and_draws_as_mmengine(tmp_path):
    out = _run(
        'import sys, json\n'
        'import numpy as np\n'
        'import mmclip.engine\n'
        'from mmengine.visualization import Visualizer\n'
        'from mmclip.registry import VISUALIZERS\n'
        'backends = [dict(type="LocalVisBackend")]\n'
        f'lazy = VISUALIZERS.build(dict(type="LazyFigureVisualizer", name="lazy", '
        f'vis_backends=backends, save_dir={str(tmp_path)!r}))\n'
        'lazy.add_scalars({"accuracy/top1": 50.0})\n'
        'before = "matplotlib" in sys.modules\n'
        'image = np.random.RandomState(0).randint(0, 255, (40, 60, 3)).astype(np.uint8)\n'
        'plain = Visualizer(name="plain")\n'
        'drawn = []\n'
        'for vis in (lazy, plain):\n'
        '    vis.set_image(image)\n'
        '    vis.draw_bboxes(np.array([[5, 5, 30, 20]]), edge_colors="r")\n'
        '    drawn.append(vis.get_image())\n'
        'print(json.dumps([before, bool((drawn[0] == drawn[1]).all()), lazy.dpi == plain.dpi]))\n')
    assert json.loads(out.splitlines()[-1]) == [False, True, True]
    (scalars, ) = tmp_path.glob('**/scalars.json')
    assert json.loads(scalars.read_text())['accuracy/top1'] == 50.0


def test_runner_logs_the_environment_without_importing_torchvision(tmp_path):
    config = write_tiny_config(tmp_path)
    out = _run('import sys, json\n'
               'from mmengine.config import Config\n'
               'from mmclip.engine import MMClipRunner\n'
               f'cfg = Config.fromfile({str(config)!r})\n'
               f'cfg.work_dir = {str(tmp_path / "work")!r}\n'
               'MMClipRunner.from_cfg(cfg)\n'
               "print(json.dumps(['torchvision' in sys.modules, 'matplotlib' in sys.modules]))\n")
    assert json.loads(out.splitlines()[-1]) == [False, False]
    (log, ) = (tmp_path / 'work').glob('*/*.log')
    text = log.read_text()
    import torchvision  # the version the log must name, read here, not by the Runner
    for line in (f'PyTorch: {torch.__version__}',
                 f"torchvision: {torchvision.__version__.split('+')[0]}",
                 'mmclip: ', 'CPU: ', 'PyTorch compiling details', 'Runtime environment:',
                 'seed: ', 'Config:\n'):
        assert line in text, line
