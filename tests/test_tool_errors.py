"""Every user-facing entry point ends a usage error or a bad file with one line.

The commands of issue 10 run as a user would (a subprocess with the repository on
PYTHONPATH; each pays the imports, about 2 s on an idle core) and fail before any large
model is built: non-zero exit, no traceback, the offending value named. More cases of the
same kind call the tools' ``main(argv)`` in this process (the same error path, without the
start-up). ``--debug`` / ``MMCLIP_DEBUG=1`` bring the traceback back. The Python API
raises the same messages as ``ValueError`` / ``FileNotFoundError``.
"""
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import mmclip

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/clip/vit-base-p32_clip-openai-pre_3rdparty_in1k.py'
ZOO_NAME = 'vit-base-p32_clip-openai-pre_3rdparty_in1k'
DEMO = ['demo/image_demo.py', 'demo/cat.jpg']
CONVERTER = 'tools/model_converters/timm_to_mmclip.py'
GET_FLOPS = 'tools/analysis_tools/get_flops.py'
ON_CPU = not torch.cuda.is_available()


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1', **extra)
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.pop('MMCLIP_DEBUG', None)
    env.update(extra)
    return env


def _run(argv, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def mmclip_file(tmp_path_factory) -> str:
    """An mmclip-format state dict: the wrong input for the timm converter."""
    path = tmp_path_factory.mktemp('converted') / 'already_mmclip.pth'
    torch.save({'backbone.cls_token': torch.zeros(1, 1, 8),
                'head.layers.head.weight': torch.zeros(2, 8)}, path)
    return str(path)


def _issue_commands(mmclip_file: str) -> dict:
    """command -> the text its one error line must contain."""
    cases = {
        (*DEMO, 'vit-b32'): ("'vit-b32' is neither a model-zoo name nor a config file. "
                             "Did you mean ['vit-base-p32_clip"),
        (*DEMO, ZOO_NAME, '--topk', '0'): '--topk must be at least 1; got 0',
        ('tools/test.py', 'configs/clip/nope.py', 'ckpt.pth'):
            'Config file configs/clip/nope.py does not exist',
        (GET_FLOPS, 'configs/clip/nope.py'): 'Config file configs/clip/nope.py does not exist',
        (CONVERTER, 'missing.safetensors', 'out.pth'): 'SRC missing.safetensors: no such file',
        (CONVERTER, mmclip_file, 'out.pth'): 'is not a timm ViT state dict',
    }
    if ON_CPU:  # fp16 needs CUDA: a one-line refusal on the CPU
        cases[(*DEMO, ZOO_NAME, '--precision', 'fp16')] = '--precision fp16'
        cases[('tools/train.py', CONFIG, '--precision', 'fp16')] = '--precision fp16'
    return cases


def _assert_one_error_line(output: str, expected: str, context) -> None:
    errors = [line for line in output.splitlines() if 'ERROR' in line]
    assert len(errors) == 1 and expected in errors[0], (context, output[-2000:])


def test_the_issue_commands_end_in_one_line_without_traceback(mmclip_file):
    cases = _issue_commands(mmclip_file)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(cases, pool.map(_run, cases)))
    for argv, expected in cases.items():
        result = results[argv]
        assert result.returncode != 0, (argv, result.stdout + result.stderr)
        assert 'Traceback' not in result.stderr, (argv, result.stderr[-2000:])
        _assert_one_error_line(result.stdout + result.stderr, expected, argv)


def _tool(path: str):
    spec = importlib.util.spec_from_file_location(f'tool_{Path(path).stem}', ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('argv, expected', [
    (('demo/image_demo.py', 'demo/no_such.jpg', ZOO_NAME), "Cannot read image 'demo/no_such.jpg'"),
    (('tools/test.py', CONFIG), 'CHECKPOINT is missing'),
    (('tools/test.py', 'vit-base-p32_clip-openai'), "Did you mean ['vit-base-p32_clip-openai"),
    (('tools/test.py', ZOO_NAME, '--data-root', 'no/such/dir'), '--data-root no/such/dir'),
    (('tools/train.py', CONFIG, '--pretrained', 'nowhere.pth'),
     '--pretrained nowhere.pth: no such checkpoint file'),
    (('tools/train.py', CONFIG, '--cfg-options', 'data_root=/data'),
     '--cfg-options data_root=...: a top-level data_root is read by no component'),
    ((GET_FLOPS, CONFIG, '--shape', '250', '250'),
     '--shape 250 250: each side must be a multiple of the patch size 32 (e.g. 256)'),
    (('tools/analysis_tools/benchmark.py', 'vit-b32'), "'vit-b32' is neither"),
])
def test_more_bad_arguments_are_one_line(argv, expected, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv('MMCLIP_DEBUG', raising=False)
    assert _tool(argv[0]).main(list(argv[1:])) == 1
    out, err = capsys.readouterr()
    assert 'Traceback' not in err
    _assert_one_error_line(out + err, expected, argv)


def test_an_error_after_the_runner_started_is_a_plain_line_and_logged_without_code_location(
        tmp_path, tiny_config):
    """On the console the same plain ``ERROR: ...`` line as before the Runner started
    (issue 22); in the log file as the run's other lines are: mmengine's ERROR format would
    add 'mmclip/cli/launch.py - exit_code_of - <line>', which helps no user."""
    missing = tmp_path / 'missing.pth'
    result = _run(['tools/test.py', str(tiny_config()), str(missing),
                   '--work-dir', str(tmp_path / 'work')])
    assert result.returncode == 1
    text = f'Checkpoint file {missing} does not exist.'
    _assert_one_error_line(result.stdout + result.stderr, text, 'tools/test.py')
    assert re.search(r'^ERROR: ' + re.escape(text) + '$', result.stderr, re.M)
    message = f'- mmengine - ERROR - {text}'
    (log, ) = (tmp_path / 'work').glob('*/*.log')
    assert re.search(r'^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ' + re.escape(message) + '$',
                     log.read_text(), re.M)


def test_debug_brings_the_traceback_back(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(FileNotFoundError, match='nope.py'):
        _tool(GET_FLOPS).main(['configs/clip/nope.py', '--debug'])
    assert 'Traceback' in _run([GET_FLOPS, 'configs/clip/nope.py'], MMCLIP_DEBUG='1').stderr


def test_exit_process_keeps_the_exit_code_and_output_of_a_distributed_run(tmp_path):
    """A rank leaves through os._exit (gloo's threads can abort the interpreter's
    teardown): its exit code and its buffered output must still come out."""
    script = (
        'import torch\n'
        'from mmclip.cli.launch import exit_process\n'
        f"torch.distributed.init_process_group('gloo', init_method='file://{tmp_path / 'store'}',"
        ' rank=0, world_size=1)\n'
        'torch.distributed.all_reduce(torch.ones(4))\n'
        "print('done')\n"
        'exit_process(3)\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONUNBUFFERED'}  # stdout buffered
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    assert (result.returncode, result.stdout) == (3, 'done\n'), result.stderr
    from mmclip.cli.launch import exit_process
    with pytest.raises(SystemExit) as exited:
        exit_process(2)
    assert exited.value.code == 2


def test_python_api_raises_the_same_messages():
    with pytest.raises(ValueError, match=r"'vit-b32' is neither .* Did you mean \['vit-base-p32"):
        mmclip.get_model('vit-b32')
    if ON_CPU:
        with pytest.raises(ValueError, match="precision='fp16' needs a CUDA device"):
            mmclip.inference_model(ZOO_NAME, 'demo/cat.jpg', device='cpu', precision='fp16')
    with pytest.raises(FileNotFoundError, match='nope.py'):
        mmclip.get_model('configs/clip/nope.py')


TOOLS = ['tools/test.py', 'tools/train.py', 'demo/image_demo.py', CONVERTER, GET_FLOPS,
         'tools/analysis_tools/benchmark.py', 'tools/analysis_tools/make_jpeg_folder.py',
         'tools/analysis_tools/openvino_gemm.py',
         'tools/predict.py', 'tools/deployment/pytorch2onnx.py', 'tools/wise_ft.py',
         'tools/model_converters/zeroshot_to_classifier.py']


@pytest.mark.parametrize('path', TOOLS)
def test_every_option_has_help_with_its_default(path, capsys):
    with pytest.raises(SystemExit):
        _tool(path).parse_args(['--help'])
    text = capsys.readouterr().out.split('options:', 1)[1]
    # One block per option: its first line starts with '  -', continuations are indented.
    blocks = re.split(r'\n(?=  -)', text.strip('\n'))
    for block in blocks:
        if block.lstrip().startswith('-h, --help'):
            continue
        assert 'default' in ' '.join(block.split()), f'{path}: {block}'


def _documented_commands() -> list:
    """Every concrete ``python tools/...`` / ``python demo/...`` command of the README and
    the evaluation, fine-tuning and robust fine-tuning docs (continuation lines joined;
    synopses with ``[options]`` left out)."""
    commands = []
    for doc in ('README.md', 'docs/evaluation.md', 'docs/finetune.md',
                'docs/robust_finetune.md'):
        text = (ROOT / doc).read_text().replace('\\\n', ' ')
        for line in text.splitlines():
            line = line.split('&& ')[-1].strip()
            argv = line.split()[1:]
            # A config in a work dir is one an earlier command wrote (tests/test_docs.py
            # runs the doc's commands in order).
            if (re.match(r'python (tools|demo)/\S+\.py ', line) and '[' not in line
                    and not argv[1].startswith('work_dirs/')):
                commands.append((doc, argv))
    return commands


@pytest.mark.parametrize('doc, argv', _documented_commands(),
                         ids=lambda x: x if isinstance(x, str) else ' '.join(x[:2]))
def test_documented_commands_parse_and_name_real_configs(doc, argv, monkeypatch):
    from mmclip.apis.model_zoo import resolve_config
    from mmclip.cli.launch import merge_cfg_options
    monkeypatch.chdir(ROOT)
    args = _tool(argv[0]).parse_args(argv[1:])
    spec = getattr(args, 'config', None) or getattr(args, 'model', None)
    if spec is not None:
        cfg = resolve_config(spec)[0]  # a config file of the repository, or a zoo name
        merge_cfg_options(cfg, getattr(args, 'cfg_options', None))  # keys the config has
