"""Issue 22, item 3: each of these ends in exactly one plain ``ERROR: ...`` line, the right
exit code and no traceback, as a user runs it (a subprocess of the tool; tiny models and
files made here, except where the mistake needs the real config's model)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import torch
from conftest import REPO_ROOT, write_tiny_config

import mmclip

ON_CPU = not torch.cuda.is_available()


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO_ROOT))
    env.pop('MMCLIP_DEBUG', None)
    return env


def run_tool(argv: List[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    command = argv if argv[0] == 'bash' else [sys.executable, *argv]
    return subprocess.run(command, cwd=cwd, env=dict(_env(), **env), capture_output=True,
                          text=True, timeout=300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def assert_one_error_line(result: subprocess.CompletedProcess, expected: str,
                          code: int = 1) -> str:
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if 'ERROR' in line]
    assert result.returncode == code, output[-3000:]
    assert len(errors) == 1 and errors[0].startswith('ERROR: '), output[-3000:]
    assert expected in errors[0], errors[0]
    assert 'Traceback' not in output, output[-3000:]
    return errors[0]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory) -> dict:
    """A tiny 64 px config of patch 16 and 32, a checkpoint of each, and an ImageNet-layout
    folder of 8 copies of a demo photo."""
    root = tmp_path_factory.mktemp('tiny')
    files = {}
    for patch in (16, 32):
        config = write_tiny_config(root, img_size=64, patch_size=patch)
        torch.manual_seed(0)
        torch.save(mmclip.get_model(str(config)).state_dict(), root / f'p{patch}.pth')
        files[f'config{patch}'], files[f'ckpt{patch}'] = config, root / f'p{patch}.pth'
    data = root / 'data'
    (data / 'val').mkdir(parents=True)
    (data / 'meta').mkdir()
    lines = []
    for i in range(8):
        (data / 'val' / f'img{i}.jpg').write_bytes((REPO_ROOT / 'demo' / 'cat.jpg').read_bytes())
        lines.append(f'img{i}.jpg {i}')
    (data / 'meta' / 'val.txt').write_text('\n'.join(lines) + '\n')
    files['data'] = data
    return files


def test_a_corrupt_image_under_torchrun_is_one_line_from_the_failing_rank(tiny, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(tiny['data'], data)
    victim = data / 'val' / 'img5.jpg'
    victim.write_bytes(victim.read_bytes()[:300])  # a cut-off JPEG
    argv = ['bash', str(REPO_ROOT / 'tools' / 'dist_test.sh'), str(tiny['config16']),
            str(tiny['ckpt16']), '2', '--data-root', str(data), '--work-dir',
            str(tmp_path / 'work')]
    for _ in range(3):  # another process may take the free port before torchrun binds it
        result = run_tool(argv, tmp_path, PORT=str(free_port()))
        if 'address already in use' not in (result.stdout + result.stderr).lower():
            break
    assert_one_error_line(result, f"ERROR: rank 1: Cannot read image '{victim}'")
    assert 'ChildFailedError' not in result.stderr and '[rank' not in result.stderr


def test_a_failed_rank_that_said_nothing_gets_one_line():
    from mmclip.cli.torchrun import _failure_line
    assert _failure_line(1, 1) is None  # it printed its own ERROR line
    assert _failure_line(3, -9) == ('rank 3 was stopped by signal 9 SIGKILL (SIGKILL: often '
                                    'the kernel, for lack of memory).')
    assert _failure_line(0, 2) == 'rank 0 exited with code 2.'


@pytest.mark.parametrize('processes', [1, 2])
def test_ctrl_c_ends_with_one_line_and_130(tiny, tmp_path, processes):
    """Ctrl-C while tools/test.py evaluates, alone or under torchrun (dist_test.sh): SIGINT
    to the whole process group, as a terminal sends it, so the ranks and their DataLoader
    workers get it too."""
    data = tmp_path / 'data'  # long enough to be interrupted: one photo listed 3000 times
    shutil.copytree(tiny['data'], data)
    (data / 'meta' / 'val.txt').write_text('img0.jpg 0\n' * 3000)
    args = [str(tiny['config16']), str(tiny['ckpt16']), '--data-root', str(data),
            '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            'test_dataloader.batch_size=1', 'test_dataloader.num_workers=1']
    command = ([sys.executable, str(REPO_ROOT / 'tools' / 'test.py'), *args] if processes == 1
               else ['bash', str(REPO_ROOT / 'tools' / 'dist_test.sh'), *args[:2], '2',
                     *args[2:]])
    process = subprocess.Popen(command, cwd=tmp_path, env=dict(_env(), PORT=str(free_port())),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines = []
    for line in process.stdout:  # until the run is under way
        lines.append(line)
        if 'Epoch(test)' in line:
            break
    os.killpg(process.pid, signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, ''.join(lines) + rest,
                                         '')
    assert_one_error_line(result, 'interrupted (Ctrl-C).', code=130)


@pytest.mark.skipif(not ON_CPU, reason='a machine without CUDA')
def test_device_cuda_without_a_gpu_is_one_line(tiny, tmp_path):
    demo = REPO_ROOT / 'demo'
    result = run_tool([str(demo / 'image_demo.py'), str(demo / 'cat.jpg'),
                       str(tiny['config16']), '--pretrained', str(tiny['ckpt16']), '--device',
                       'cuda'], tmp_path)
    assert_one_error_line(result, "device 'cuda': torch finds no CUDA GPU here")


def test_a_mistyped_config_path_says_the_file_does_not_exist(tmp_path):
    result = run_tool([str(REPO_ROOT / 'tools' / 'test.py'),
                       'configs/clip/vit-base-p32_clip-openai-pre_3rdparty_in1k.pyy', 'x.pth'],
                      REPO_ROOT)
    line = assert_one_error_line(result, 'Config file configs/clip/vit-base-p32_clip-openai-'
                                         'pre_3rdparty_in1k.pyy does not exist.')
    assert 'model-zoo name nor' not in line


def test_empty_class_folders_end_training_with_one_line_naming_them(tmp_path):
    for split in ('train', 'val'):
        for name in ('cat', 'dog'):
            (tmp_path / 'pets' / split / name).mkdir(parents=True)
    result = run_tool([str(REPO_ROOT / 'tools' / 'train.py'),
                       str(REPO_ROOT / 'configs' / 'clip' / 'vit-base-p32_clip_ft_custom.py'),
                       '--data-root', str(tmp_path / 'pets'), '--work-dir', str(tmp_path / 'w'),
                       '--cfg-options', 'model.head.num_classes=2',
                       'data_preprocessor.num_classes=2'], tmp_path)
    train = tmp_path / 'pets' / 'train'
    assert_one_error_line(result, f"The class folders of '{train}' hold no images "
                                  f"('{train / 'cat'}', '{train / 'dog'}')")


def test_a_classifier_checkpoint_in_a_zero_shot_model_is_one_line(tiny, tmp_path):
    config = REPO_ROOT / 'configs/clip/clip_vit-base-p32_openai_zeroshot-cls_in1k.py'
    result = run_tool([str(REPO_ROOT / 'tools' / 'test.py'), str(config),
                       str(tiny['ckpt32']), '--data-root', str(tiny['data']), '--work-dir',
                       str(tmp_path / 'w')], tmp_path)
    assert_one_error_line(result, f"{tiny['ckpt32']} is a classifier checkpoint (1000 classes, "
                                  'no text tower), and the model is a zero-shot model')


def test_a_b16_checkpoint_in_a_b32_model_is_one_consistent_line(tiny, tmp_path):
    result = run_tool([str(REPO_ROOT / 'tools' / 'test.py'), str(tiny['config32']),
                       str(tiny['ckpt16']), '--data-root', str(tiny['data']), '--work-dir',
                       str(tmp_path / 'w')], tmp_path)
    line = assert_one_error_line(result, 'was saved from another architecture than the model: '
                                         '2 tensor(s) differ in shape (backbone.patch_embed.')
    assert 'backbone.pos_embed: checkpoint (1, 17, 64) vs model (1, 5, 64)' in line


# ---- outputs: checked before the work -------------------------------------------------
TOOLS = REPO_ROOT / 'tools'


@pytest.mark.parametrize('tool,name', [('test.py', 'preds.json'),
                                       ('analysis_tools/benchmark.py', 'report.json'),
                                       ('deployment/pytorch2onnx.py', 'model.onnx'),
                                       ('predict.py', 'preds.jsonl')])
def test_a_file_the_tool_did_not_write_is_refused_before_any_work(tiny, tmp_path, tool, name):
    """The model, the checkpoint and the data are never reached: the checkpoint here does
    not exist (test.py: nothing is evaluated, no log is written), yet the error is about the
    output, which is kept."""
    out = tmp_path / name
    content = b'{"the user\'s": "own file"}\n'
    out.write_bytes(content)
    missing = str(tmp_path / 'missing.pth')
    config = str(tiny['config16'])
    argv = {'test.py': [config, str(tiny['ckpt16']), '--data-root', str(tiny['data']),
                        '--out', str(out), '--work-dir', str(tmp_path / 'work')],
            'analysis_tools/benchmark.py': [config, '--checkpoint', missing, '--out', str(out)],
            'deployment/pytorch2onnx.py': [config, missing, str(out)],
            'predict.py': [str(tiny['data']), '--model', config, '--checkpoint', missing,
                           '--out', str(out)]}[tool]
    result = run_tool([str(TOOLS / tool), *argv], tmp_path)
    assert_one_error_line(result, f'{out} exists and was not written by')
    assert out.read_bytes() == content
    assert not (tmp_path / 'work').exists() or not any((tmp_path / 'work').iterdir())


def test_predict_refuses_empty_input_and_creates_the_out_folder_saying_so(tiny, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('not an image')
    out = tmp_path / 'new' / 'sub' / 'preds.jsonl'
    command = [str(TOOLS / 'predict.py'), '--model', str(tiny['config16']), '--checkpoint',
               str(tiny['ckpt16']), '--out', str(out), '--num-workers', '0']
    result = run_tool([command[0], str(empty), *command[1:]], tmp_path)
    assert_one_error_line(result, f'no image in {empty}')
    assert 'predict.py --help' in result.stderr and not out.parent.exists()

    result = run_tool([command[0], str(tiny['data']), *command[1:]], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'Created the folder {out.parent} for --out' in result.stdout
    assert '8 images; 8 classified now by rank 0 of 1 (0 of them unreadable' in result.stdout
    assert len(out.read_text().splitlines()) == 1 + 8  # the marker, then one record each


def test_predictions_files_are_recognised_without_running_a_pickle(tmp_path):
    """tools/test.py --out replaces only what DumpPredictions wrote; a pickle that would
    build objects is judged from its opcodes, never loaded."""
    import json
    import pickle

    from mmclip.evaluation import is_predictions_file
    record = dict(img_path='a.jpg', gt_label=1, pred_label=2, pred_score=0.5, load_error=None)
    ours_json, ours_pkl = tmp_path / 'p.json', tmp_path / 'p.pkl'
    ours_json.write_text(json.dumps([record]))
    ours_pkl.write_bytes(pickle.dumps([record]))
    assert is_predictions_file(str(ours_json)) and is_predictions_file(str(ours_pkl))
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))
    hostile = tmp_path / 'hostile.pkl'
    hostile.write_bytes(pickle.dumps([record, Payload()]))
    theirs = tmp_path / 'theirs.json'
    theirs.write_text(json.dumps([dict(record, extra=1)]))
    assert not is_predictions_file(str(hostile)) and not marker.exists()
    assert not is_predictions_file(str(theirs))


def test_after_ctrl_c_a_helper_threads_reset_connection_prints_nothing(monkeypatch, capsys):
    """multiprocessing's fd-sharing thread reports through sys.excepthook, other threads
    through threading.excepthook: after Ctrl-C, a reset connection is no news in either;
    anything else still prints."""
    import threading

    from mmclip.cli.launch import _quiet_threads_once_interrupted
    monkeypatch.setattr(sys, 'excepthook', sys.excepthook)  # restored after the test
    monkeypatch.setattr(threading, 'excepthook', threading.excepthook)
    with pytest.raises(KeyboardInterrupt):
        with _quiet_threads_once_interrupted():
            # The helper thread may fail before the main thread runs the SIGINT's handler.
            early = threading.Thread(target=sys.excepthook,
                                     args=(EOFError, EOFError('early'), None))
            early.start()
            time.sleep(0.2)
            signal.raise_signal(signal.SIGINT)
    early.join()
    sys.excepthook(ConnectionResetError, ConnectionResetError('reset'), None)
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(EOFError('gone')))
    thread.start()
    thread.join()
    assert capsys.readouterr().err == ''
    sys.excepthook(ValueError, ValueError('news'), None)
    assert 'ValueError: news' in capsys.readouterr().err
