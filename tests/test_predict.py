"""tools/predict.py: records per image, bad files recorded, resume, csv, 2-process sharding."""
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_config

from mmclip import get_model
from mmclip.apis.inference import ImageClassificationInferencer
from mmclip.cli.batch_prediction import (
    JSONL_MARKER,
    OutputFileError,
    PredictionFile,
    collect_inputs,
)

ROOT = Path(__file__).resolve().parents[1]
PREDICT = ROOT / 'tools' / 'predict.py'


@pytest.fixture(scope='module')
def setup(tmp_path_factory, images_dir):
    """(config, checkpoint, folder): the photos in nested folders, plus an empty JPEG and
    a text file behind a .png name; a tiny 1000-class model whose head spreads the photos."""
    tmp_path = tmp_path_factory.mktemp('predict')
    folder = tmp_path / 'photos'
    for i, photo in enumerate(sorted(images_dir.glob('*.*g'))):
        sub = folder / f'part{i % 3}' / ('deeper' if i % 2 else '')
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sub / photo.name)
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'part0' / 'notes.png').write_text('not an image')
    (folder / 'readme.txt').write_text('skipped: not an image suffix')
    config = write_tiny_config(tmp_path)
    torch.manual_seed(0)
    model = get_model(str(config))
    with torch.no_grad():
        model.head.layers.head.weight.normal_(0, 3)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return config, checkpoint, folder


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _predict(setup, out, *extra, launcher=(sys.executable, )):
    config, checkpoint, folder = setup
    cmd = [*launcher, str(PREDICT), str(folder), '--model', str(config), '--checkpoint',
           str(checkpoint), '--out', str(out), '--batch-size', '3', '--num-workers', '1',
           *extra]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _jsonl(path):
    """The records of a jsonl output, after its marker line."""
    lines = Path(path).read_text(encoding='utf-8').splitlines()
    assert json.loads(lines[0]) == JSONL_MARKER
    return [json.loads(line) for line in lines[1:]]


@pytest.fixture(scope='module')
def reference(setup, tmp_path_factory):
    """The output of one uninterrupted single-process run, top-3."""
    out = tmp_path_factory.mktemp('reference') / 'ref.jsonl'
    _predict(setup, out, '--topk', '3')
    return out


def test_one_record_per_image_equal_to_the_inferencer_and_bad_files_recorded(setup,
                                                                              reference):
    config, checkpoint, folder = setup
    records = _jsonl(reference)
    paths = collect_inputs([str(folder)])
    assert [r['path'] for r in records] == paths and len(paths) == 13
    errors = {Path(r['path']).name: r['error'] for r in records if 'error' in r}
    assert set(errors) == {'empty.jpg', 'notes.png'}
    assert 'empty' in errors['empty.jpg'] and 'notes.png' in errors['notes.png']
    good = [r for r in records if 'error' not in r]
    inferencer = ImageClassificationInferencer(str(config), pretrained=str(checkpoint),
                                               device='cpu')
    expected = inferencer([r['path'] for r in good], batch_size=4, show_progress=False)
    for record, result in zip(good, expected):
        order = np.argsort(-result['pred_scores'])[:3]
        assert record['labels'] == order.tolist()
        np.testing.assert_allclose(record['scores'], result['pred_scores'][order], atol=1e-5)
        assert record['classes'][0] == result['pred_class']
    assert len({r['labels'][0] for r in good}) > 2  # the check can fail


def test_rerun_after_an_interruption_gives_exactly_one_line_per_image(setup, reference,
                                                                     tmp_path):
    lines = reference.read_text().splitlines(keepends=True)
    out = tmp_path / 'out.jsonl'
    # What a run killed while writing its second batch leaves: whole lines, then a torn one.
    out.write_text(''.join(lines[:4]) + lines[4][:len(lines[4]) // 2])
    stdout = _predict(setup, out, '--topk', '3')
    assert f'{len(lines) - 4} classified now' in stdout
    records = _jsonl(out)
    assert sorted(r['path'] for r in records) == sorted(r['path'] for r in _jsonl(reference))
    by_path = {r['path']: r for r in _jsonl(reference)}
    for record in records:
        assert record.get('labels') == by_path[record['path']].get('labels')
    before = out.read_bytes()
    assert '0 classified now' in _predict(setup, out, '--topk', '3')  # nothing left to do
    assert out.read_bytes() == before


def test_csv_output_and_resume_checks_its_columns(setup, reference, tmp_path):
    out = tmp_path / 'out.csv'
    _predict(setup, out, '--topk', '2')
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 13 and list(rows[0]) == [
        'path', 'label_1', 'label_2', 'class_1', 'class_2', 'score_1', 'score_2', 'error']
    assert sum(bool(r['error']) for r in rows) == 2
    expected = {r['path']: str(r['labels'][0]) for r in _jsonl(reference) if 'labels' in r}
    assert {r['path']: r['label_1'] for r in rows if not r['error']} == expected
    config, checkpoint, folder = setup
    result = subprocess.run(
        [sys.executable, str(PREDICT), str(folder), '--model', str(config), '--checkpoint',
         str(checkpoint), '--out', str(out), '--topk', '3'],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f'ERROR: {out} exists with')


def _assert_same_records(expected_file, got_file):
    """Same paths in the same order, same labels and errors, scores within 1e-5."""
    a, b = _jsonl(expected_file), _jsonl(got_file)
    assert [r['path'] for r in b] == [r['path'] for r in a]
    for x, y in zip(a, b):
        assert x.get('labels') == y.get('labels') and x.get('error') == y.get('error')
        np.testing.assert_allclose(x.get('scores', []), y.get('scores', []), atol=1e-5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_processes_write_the_one_process_output(setup, reference, tmp_path):
    single = reference
    double = tmp_path / 'double.jsonl'
    launcher = (sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2',
                '--master-port', str(_free_port()))
    _predict(setup, double, '--topk', '3', launcher=launcher)
    _assert_same_records(single, double)
    assert not list(tmp_path.glob('double.jsonl.part*'))


def test_inputs_from_globs_list_files_and_images_in_order_once(setup, tmp_path):
    _, _, folder = setup
    listing = tmp_path / 'list.txt'
    first = sorted(folder.rglob('*.png'))[0]
    listing.write_text(f'{first}\n\n{folder / "empty.jpg"}\n')
    found = collect_inputs([str(listing), str(folder / '**' / '*.jpg'), str(first)])
    jpgs = sorted(str(p) for p in folder.rglob('*.jpg'))
    assert found == [str(first), str(folder / 'empty.jpg')] + [
        p for p in jpgs if p != str(folder / 'empty.jpg')]
    with pytest.raises(FileNotFoundError, match='matches no file'):
        collect_inputs([str(folder / '*.gif')])


def test_onnxruntime_backend_gives_the_torch_records(setup, reference, tmp_path):
    pytest.importorskip('onnxruntime')
    from mmclip.deployment import export_onnx
    config, checkpoint, folder = setup
    onnx_file = export_onnx(get_model(str(config), pretrained=str(checkpoint)),
                            tmp_path / 'tiny.onnx')
    out = tmp_path / 'ort.jsonl'
    cmd = [sys.executable, str(PREDICT), str(folder), '--model', str(config), '--checkpoint',
           str(onnx_file), '--backend', 'onnxruntime', '--out', str(out), '--topk', '3',
           '--num-workers', '0']
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_records(reference, out)


def test_a_run_killed_mid_way_then_rerun_holds_each_image_once(setup, tmp_path):
    import signal
    import time

    from PIL import Image
    config, checkpoint, _ = setup
    folder = tmp_path / 'many'
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(300):
        Image.fromarray(rng.randint(0, 255, (72, 80, 3), dtype=np.uint8)).save(
            folder / f'{i:03d}.png')
    out = tmp_path / 'out.jsonl'
    cmd = [sys.executable, str(PREDICT), str(folder), '--model', str(config), '--checkpoint',
           str(checkpoint), '--out', str(out), '--batch-size', '1', '--num-workers', '0']
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or out.read_text().count('\n') < 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_text().count('\n')
    assert proc.returncode == -signal.SIGKILL and 5 <= written < 300
    subprocess.run(cmd[:-4] + ['--batch-size', '16'], env=_env(), check=True,
                   capture_output=True, timeout=300)
    paths = [r['path'] for r in _jsonl(out)]
    assert sorted(paths) == sorted(str(p) for p in folder.glob('*.png'))


def _predict_refused(setup, out, *extra) -> str:
    """Run predict.py expecting refusal: exit 1 and one ERROR line, no traceback."""
    config, checkpoint, folder = setup
    cmd = [sys.executable, str(PREDICT), str(folder), '--model', str(config), '--checkpoint',
           str(checkpoint), '--out', str(out), '--num-workers', '0', *extra]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('name,content', [
    ('mine.jsonl', b'{"path": "my notes", "labels": [1]}'),  # one line, no final newline
    ('mine.jsonl', b'{"mmclip": "something else"}\n{"path": "x"}\n'),  # a foreign marker
    ('mine.jsonl', b'\xff\xfe binary'),
    ('mine.csv', b'name,score\nme,1\n'),
])
def test_an_existing_file_it_did_not_write_is_refused_and_left_byte_identical(
        setup, tmp_path, name, content):
    out = tmp_path / name
    out.write_bytes(content)
    line = _predict_refused(setup, out)
    assert line.startswith(f'ERROR: {out} exists and was not written by tools/predict.py')
    assert out.read_bytes() == content


def test_a_symlink_out_is_refused_and_its_target_kept(setup, reference, tmp_path):
    target = tmp_path / 'target.jsonl'
    target.write_bytes(reference.read_bytes())  # even a file predict.py wrote
    out = tmp_path / 'link.jsonl'
    out.symlink_to(target)
    assert _predict_refused(setup, out) == f'ERROR: {out} is a symbolic link; ' \
        'tools/predict.py writes only a regular file it created.'
    assert out.is_symlink() and target.read_bytes() == reference.read_bytes()


def test_forged_and_malformed_records_are_dropped_named_and_predicted_again(
        setup, reference, tmp_path):
    records = _jsonl(reference)
    good = [r for r in records if 'error' not in r]
    p = [r['path'] for r in good]
    lines = [
        json.dumps(dict(good[0], labels='0')),  # line 2: a field of the wrong type
        json.dumps(dict(path=[p[1]], error='x')),  # line 3: a path that is a list
        json.dumps([p[2]]),  # line 4: not an object
        json.dumps(dict(good[3], scores=[float('nan')] * 3)),  # line 5: NaN scores
        json.dumps(dict(good[4], classes=[1, 2, 3])),  # line 6: classes not names
        json.dumps(dict(good[5], extra=True)),  # line 7: a field it never writes
        json.dumps(good[6]),  # line 8: a true record, kept
        json.dumps(dict(good[6], labels=[0, 1, 2])),  # line 9: a second record of it
        json.dumps(dict(good[7], path='elsewhere/other.jpg')),  # line 10: kept, unused
        '{"path": "torn',
    ]
    out = tmp_path / 'out.jsonl'
    out.write_text(reference.read_text().splitlines(keepends=True)[0] + '\n'.join(lines))
    config, checkpoint, folder = setup
    cmd = [sys.executable, str(PREDICT), str(folder), '--model', str(config), '--checkpoint',
           str(checkpoint), '--out', str(out), '--topk', '3', '--num-workers', '0']
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    both = result.stdout + result.stderr
    assert f'{out}: 7 line(s) are not records tools/predict.py writes' in both
    for number in (2, 3, 4, 5, 6):
        assert f'line {number}: ' in both
    assert 'and 2 more' in both and '1 record(s) of images that are not among' in both
    assert '12 classified now' in result.stdout and '7 untrusted lines dropped' in result.stdout
    got = _jsonl(out)
    assert got[0] == good[6] and got[1]['path'] == 'elsewhere/other.jpg'
    by_path = {r['path']: r for r in got}
    assert len(got) == 14 and set(by_path) == {r['path'] for r in records} | {
        'elsewhere/other.jpg'}
    for record in records:
        assert by_path[record['path']].get('labels') == record.get('labels')
        assert by_path[record['path']].get('error') == record.get('error')


def test_error_records_are_kept_and_retried_with_retry_errors(setup, reference, tmp_path):
    out = tmp_path / 'out.jsonl'
    out.write_bytes(reference.read_bytes())
    stdout = _predict(setup, out, '--topk', '3')
    assert '0 classified now' in stdout and '2 error records kept' in stdout
    assert out.read_bytes() == reference.read_bytes()
    stdout = _predict(setup, out, '--topk', '3', '--retry-errors')
    assert ('2 classified now by rank 0 of 1 (2 of them unreadable: error records; 2 retried '
            'after an error record)') in stdout
    records = _jsonl(out)
    assert sorted(r['path'] for r in records) == sorted(r['path'] for r in _jsonl(reference))
    assert [Path(r['path']).name for r in records[-2:]] == ['empty.jpg', 'notes.png']
    assert all('error' in r for r in records[-2:])


def test_paths_holding_line_separators_round_trip(setup, images_dir, tmp_path):
    config, checkpoint, _ = setup
    photo = sorted(images_dir.glob('*.jpg'))[0]
    folder = tmp_path / 'odd'
    folder.mkdir()
    names = ['new\nline.jpg', 'carriage\rreturn.jpg', 'line\u2028separator.jpg',
             'next\x85line.jpg', 'plain.jpg']
    for name in names:
        shutil.copy(photo, folder / name)
    out = tmp_path / 'odd.jsonl'
    setup_odd = (config, checkpoint, folder)
    assert '5 classified now' in _predict(setup_odd, out)
    text = out.read_text(encoding='utf-8')
    assert len(text.splitlines()) == len(names) + 1  # no raw separator in the file
    assert sorted(Path(r['path']).name for r in _jsonl(out)) == sorted(names)
    assert all('labels' in r for r in _jsonl(out))
    assert '0 classified now' in _predict(setup_odd, out)
    assert out.read_text(encoding='utf-8') == text
    line = _predict_refused(setup_odd, tmp_path / 'odd.csv')
    assert line.startswith('ERROR: ') and 'line break' in line and '.jsonl' in line
    assert not (tmp_path / 'odd.csv').exists()


@pytest.mark.parametrize('case', ['huge weights', 'short class list'])
def test_a_broken_checkpoint_is_one_error_line_naming_it(setup, tmp_path, case):
    config, checkpoint, folder = setup
    state = torch.load(checkpoint)['state_dict']
    meta = {}
    if case == 'huge weights':
        state['head.layers.head.weight'].fill_(3e38)  # finite; the logits overflow
        expected = 'the model outputs NaN or Inf for an image'
    else:
        meta = dict(dataset_meta=dict(classes=['cat', 'dog']))
        expected = '2 class names for a model with 1000 classes.'
    broken = tmp_path / 'broken.pth'
    torch.save(dict(state_dict=state, meta=meta), broken)
    out = tmp_path / 'out.jsonl'
    line = _predict_refused((config, broken, folder), out)
    assert line.startswith(f'ERROR: {broken}: {expected}')
    assert not out.exists()  # nothing predicted: no record claims label 0


def test_csv_rows_are_checked_like_jsonl_records(tmp_path):
    out = tmp_path / 'out.csv'
    target = PredictionFile(str(out), '.csv', 2)
    good = [dict(path='a.jpg', labels=[3, 1], classes=['cat', None], scores=[0.75, 0.25]),
            dict(path='b\u2028.jpg', error='OSError: truncated')]
    target.append(target.format(r) for r in good)
    with out.open('a', encoding='utf-8') as f:
        f.write('c.jpg,x,1,cat,dog,0.5,0.5,\n'  # line 4: a label that is not an index
                'd.jpg,1,,cat,,0.5,,boom\n'  # line 5: an error row with predictions
                'e.jpg,1\n'  # line 6: too few columns
                'f.jpg,1,2,cat,dog,0.5,1.5,\n'  # line 7: a score that is no probability
                'a.jpg,1,2,cat,dog,0.5,0.5,\n')  # line 8: a second record of a.jpg
    held = target.read({'a.jpg', 'b\u2028.jpg', 'c.jpg', 'd.jpg', 'e.jpg', 'f.jpg'})
    assert held.done == {'a.jpg', 'b\u2028.jpg'} and held.errors == 1
    assert [d.split(':')[0] for d in held.dropped] == [f'line {n}' for n in range(4, 9)]
    target.tidy(held)
    assert target.read({'a.jpg'}).lines == held.lines and len(held.lines) == 2
    assert out.read_text(encoding='utf-8').splitlines()[0] == ','.join(target.header)


def test_a_fifo_out_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / 'out.jsonl'
    os.mkfifo(fifo)
    with pytest.raises(OutputFileError, match='is not a regular file'):
        PredictionFile(str(fifo), '.jsonl', 5).read(set())


@pytest.mark.parametrize('sigmoid', [False, True], ids=['softmax', 'siglip_sigmoid'])
def test_records_score_with_the_heads_own_scores(sigmoid):
    """A SigLIP head scores each class by its sigmoid; other heads by softmax."""
    import contextlib
    from types import SimpleNamespace

    from mmclip.cli.batch_prediction import _records

    class Stub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = SimpleNamespace(scores=lambda x: torch.sigmoid(x.float()))

        def data_preprocessor(self, data, training):
            return dict(inputs=torch.stack(data['inputs']))

        def forward(self, x):
            return x

    model = Stub()
    if not sigmoid:
        model.head = None
    logits = torch.tensor([2.0, -1.0, 0.5])
    record, = _records(model, [(0, logits, None)], ['a.png'], 3, None,
                       contextlib.nullcontext, 'w.pth')
    expected = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, 0)
    assert record['labels'] == [0, 2, 1]
    assert record['scores'] == [round(v, 6) for v in expected[[0, 2, 1]].tolist()]
