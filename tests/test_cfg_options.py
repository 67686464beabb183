"""``--cfg-options`` sets only keys the config has (``mmclip.cli.launch.merge_cfg_options``).

A misspelt key used to be ignored (exit 0) or to end in a 40-line TypeError from a builder;
an item without ``=`` in 'not enough values to unpack'. Each is now one ``ERROR:`` line on
stderr naming the item (and the closest existing key), exit code 1, in every tool that
takes the option; valid overrides, list items and declared new keys still merge.
"""
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mmengine.config import Config

from mmclip.cli.launch import merge_cfg_options

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs/clip/vit-base-p32_clip-openai-pre_3rdparty_in1k.py')
TOOLS = ('tools/test.py', 'tools/train.py')
# --cfg-options item -> what its one error line must contain.
BAD_ITEMS = {
    'test_dataloadr.batch_size=2': "--cfg-options: unknown key 'test_dataloadr.batch_size'; "
                                   "did you mean 'test_dataloader.batch_size'?",
    'test_dataloader.batchsize=2': "--cfg-options: unknown key 'test_dataloader.batchsize'; "
                                   "did you mean 'test_dataloader.batch_size'?",
    'model.head.num_class=3': "--cfg-options: unknown key 'model.head.num_class'; "
                              "did you mean 'model.head.num_classes'?",
    'test_dataloader.batch_size': "--cfg-options: 'test_dataloader.batch_size' is not "
                                  'KEY=VALUE',
    'test_dataloader.batch_size=abc': '--cfg-options: test_dataloader.batch_size=abc: '
                                      'expected an integer (the config has 64)',
    'test_dataloader.batch_size=[1,2': "--cfg-options: 'test_dataloader.batch_size=[1,2': "
                                       'the value has unbalanced brackets',
}


def _run(tool: str, item: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.pop('MMCLIP_DEBUG', None)
    argv = [sys.executable, str(ROOT / tool), CONFIG]
    if tool == 'tools/test.py':
        argv.append('checkpoint.pth')  # never read: the options are checked first
    return subprocess.run(argv + ['--cfg-options', item], env=env, capture_output=True,
                          text=True, timeout=300)


def test_bad_overrides_end_tools_in_one_error_line():
    cases = [(tool, item) for tool in TOOLS for item in BAD_ITEMS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: _run(*case), cases))
    for (tool, item), result in zip(cases, results):
        context = (tool, item, result.stdout[-1000:], result.stderr[-2000:])
        assert result.returncode == 1, context
        assert result.stderr.splitlines() == [result.stderr.strip()], context
        assert result.stderr.startswith('ERROR: ' + BAD_ITEMS[item]), context


def _tool(path: str):
    spec = importlib.util.spec_from_file_location(f'tool_{Path(path).stem}', ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('tool', ['tools/analysis_tools/get_flops.py',
                                  'tools/analysis_tools/benchmark.py'])
def test_analysis_tools_check_their_overrides_too(tool, capsys, monkeypatch):
    monkeypatch.delenv('MMCLIP_DEBUG', raising=False)
    assert _tool(tool).main([CONFIG, '--cfg-options', 'model.head.num_class=3']) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == ('ERROR: ' + BAD_ITEMS['model.head.num_class=3'])
    assert 'Traceback' not in err


def test_valid_overrides_reach_the_tools_configs():
    items = ['test_dataloader.batch_size=2', 'test_dataloader.dataset.pipeline.2.crop_size=192',
             '+test_dataloader.drop_last=False', '+test_evaluator.per_class=True',
             'experiment_name=run_1', 'env_cfg.dist_cfg.timeout=60',
             'model.head.num_classes=None']
    for name in TOOLS:
        tool = _tool(name)
        argv = [CONFIG] + (['checkpoint.pth'] if name == 'tools/test.py' else [])
        cfg = tool.merge_args(Config.fromfile(CONFIG),
                              tool.parse_args(argv + ['--cfg-options', *items]))
        assert cfg.test_dataloader.batch_size == 2
        assert cfg.test_dataloader.dataset.pipeline[2].crop_size == 192
        assert cfg.test_dataloader.drop_last is False and cfg.test_evaluator.per_class is True
        assert cfg.experiment_name == 'run_1'
        assert cfg.env_cfg.dist_cfg.timeout == 60
        assert cfg.model.head.num_classes is None


@pytest.fixture
def cfg() -> Config:
    return Config(dict(loader=dict(batch_size=4, shuffle=True, lr=0.1, pipeline=[
        dict(type='Load'), dict(type='Resize', scale=(8, 8))]), name='x'))


@pytest.mark.parametrize('options, message', [
    ({'loader.pipeline.2.type': 'Crop'},
     "unknown key 'loader.pipeline.2.type'; did you mean 'loader.pipeline.1.type'?"),
    ({'loader.pipeline.1.sclae': 4}, "did you mean 'loader.pipeline.1.scale'?"),
    ({'zzz.qqq': 1}, "unknown key 'zzz.qqq'; the config (top level) has: loader, name"),
    ({'loader.zzzzzzz': 1}, "'loader' has: batch_size, lr, pipeline, shuffle"),
    ({'+loader.batch_size': 2}, "'+loader.batch_size' adds a key, but "
                                "'loader.batch_size' exists already"),
    ({'+loader.pipeline.x': 2}, "'loader.pipeline' is not a section (dict)"),
    ({'+loadr.x': 2}, "unknown key 'loadr'; did you mean 'loader'?"),
    ({'loader.shuffle': 1}, 'loader.shuffle=1: expected True or False (the config has True)'),
    ({'loader.batch_size': 2.5}, 'expected an integer (the config has 4)'),
    ({'loader.lr': 'fast'}, 'loader.lr=fast: expected a number (the config has 0.1)'),
])
def test_merge_refuses_keys_and_values_the_config_cannot_take(cfg, options, message):
    before = cfg.to_dict()
    with pytest.raises(ValueError, match='^--cfg-options: ') as err:
        merge_cfg_options(cfg, options)
    assert message in str(err.value)
    assert cfg.to_dict() == before


def test_merge_sets_existing_keys_list_items_and_declared_new_keys(cfg):
    merge_cfg_options(cfg, {'loader.pipeline.1.scale': [16, 16], 'loader.lr': 1,
                            '+loader.pipeline.0.backend': 'pillow', '+loader.drop_last': True,
                            'name': None})
    assert cfg.loader.pipeline[1].scale == [16, 16] and cfg.loader.lr == 1
    assert cfg.loader.pipeline[0].backend == 'pillow' and cfg.loader.drop_last is True
    assert cfg.name is None and '+loader.drop_last' not in cfg.loader
