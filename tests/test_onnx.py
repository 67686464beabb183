"""ONNX export and the ONNX Runtime backend against PyTorch on the real photos.

The graph takes uint8 RGB images and embeds the normalisation; its logits must equal
PyTorch's within 1e-4 (fp32) for ViT-B/32 and a tiny arch, through the library, the
inferencer and tools/test.py (same top-1 and per-image predictions as the checkpoint).
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from mmclip import get_model, inference_model
from mmclip.apis.inference import ImageClassificationInferencer
from mmclip.datasets.transforms import build_test_pipeline
from mmclip.deployment import (
                               MissingExtraError,
                               export_onnx,
                               exported_classifier,
                               onnxruntime_classifier,
)

ort = pytest.importorskip('onnxruntime')
HAVE_OPENVINO = importlib.util.find_spec('openvino') is not None
needs_openvino = pytest.mark.skipif(
    not HAVE_OPENVINO, reason="openvino is not installed (pip install 'mmclip[openvino]')")
ROOT = Path(__file__).resolve().parents[1]
B32 = ROOT / 'configs' / 'clip' / 'vit-base-p32_pt-64xb64_in1k.py'
TOL = 1e-4


def _photos(images_dir):
    return sorted(p for p in images_dir.iterdir() if p.suffix in ('.png', '.jpg'))


def _pipeline_batch(model, paths):
    pipeline, _ = build_test_pipeline(model.cfg)
    return pseudo_collate([pipeline(dict(img_path=str(p))) for p in paths])


def _check_graph_against_torch(model, onnx_file, paths):
    """Feed the graph uint8 RGB straight from the pipeline's BGR crops, as a user would."""
    batch = _pipeline_batch(model, paths)
    with torch.no_grad():
        expected = model(model.data_preprocessor(batch, False)['inputs']).numpy()
    rgb = np.stack([x.numpy()[::-1] for x in batch['inputs']])
    session = onnxruntime_classifier.create_session(onnx_file, threads=1)
    (logits, ) = session.run(None, {'images': np.ascontiguousarray(rgb)})
    assert np.abs(logits - expected).max() <= TOL
    (one, ) = session.run(None, {'images': np.ascontiguousarray(rgb[:1])})  # dynamic batch
    assert np.abs(one - expected[:1]).max() <= TOL
    return session


def test_vit_b32_export_matches_pytorch_on_the_photos(images_dir, tmp_path):
    torch.manual_seed(0)
    model = get_model(str(B32))
    onnx_file = export_onnx(model, tmp_path / 'b32.onnx')
    assert not (tmp_path / 'b32.onnx.data').exists()  # 350 MB: weights stay inline
    session = _check_graph_against_torch(model, onnx_file, _photos(images_dir))
    meta = onnxruntime_classifier.onnx_metadata(session)
    assert meta['image_size'] == 224 and len(meta['classes']) == 1000
    assert session.get_inputs()[0].type == 'tensor(uint8)'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory, images_dir):
    """(config, checkpoint, onnx, model): a tiny 10-class model whose head spreads the
    photos over several classes, saved as a checkpoint and exported with the CLI."""
    from conftest import write_tiny_config
    root = tmp_path_factory.mktemp('tiny')
    config = write_tiny_config(root, num_classes=10)
    torch.manual_seed(0)
    model = get_model(str(config))
    with torch.no_grad():
        model.head.layers.head.weight.normal_(0, 3)
    checkpoint = root / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    onnx_file = root / 'tiny.onnx'
    cmd = [sys.executable, str(ROOT / 'tools/deployment/pytorch2onnx.py'), str(config),
           str(checkpoint), str(onnx_file), '--verify', '--verify-images',
           *map(str, _photos(images_dir))]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    diff = float(result.stdout.split('images: ')[-1])
    assert diff <= TOL
    return config, checkpoint, onnx_file, model


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def test_tiny_export_matches_pytorch_and_the_inferencer_runs_it(tiny, images_dir):
    config, _, onnx_file, model = tiny
    photos = _photos(images_dir)
    _check_graph_against_torch(model, onnx_file, photos)
    torch_results = ImageClassificationInferencer(model)(photos, batch_size=4,
                                                         show_progress=False)
    ort_results = inference_model(str(config), photos, pretrained=str(onnx_file),
                                  batch_size=4, backend='onnxruntime')
    assert [r['pred_label'] for r in ort_results] == [r['pred_label'] for r in torch_results]
    np.testing.assert_allclose(np.stack([r['pred_scores'] for r in ort_results]),
                               np.stack([r['pred_scores'] for r in torch_results]), atol=1e-5)
    assert len({r['pred_label'] for r in torch_results}) > 2  # the check can fail


def test_onnxruntime_backend_rejects_what_it_cannot_run(tiny):
    config, checkpoint, onnx_file, model = tiny
    with pytest.raises(ValueError, match='needs pretrained=<an .onnx'):
        ImageClassificationInferencer(str(config), pretrained=str(checkpoint),
                                      backend='onnxruntime')
    with pytest.raises(ValueError, match="precision='fp32'"):
        ImageClassificationInferencer(str(config), pretrained=str(onnx_file),
                                      backend='onnxruntime', precision='bf16')
    with pytest.raises(ValueError, match='backend must be one of'):
        ImageClassificationInferencer(model, backend='tensorrt')
    with pytest.raises(ValueError, match='not a built torch model'):
        ImageClassificationInferencer(model, backend='onnxruntime')


def test_missing_onnxruntime_is_one_clear_line(monkeypatch):
    real = exported_classifier.importlib.util.find_spec
    monkeypatch.setattr(exported_classifier.importlib.util, 'find_spec',
                        lambda name: None if name == 'onnxruntime' else real(name))
    with pytest.raises(MissingExtraError, match=r"onnxruntime.*pip install 'mmclip\[onnx\]'"):
        onnxruntime_classifier.create_session('model.onnx')


def _imagenet_folder(root: Path, photos, labels) -> Path:
    (root / 'val').mkdir(parents=True)
    (root / 'meta').mkdir()
    lines = []
    for i, (photo, label) in enumerate(zip(photos, labels)):
        name = f'ILSVRC2012_val_{i + 1:08d}{photo.suffix}'
        (root / 'val' / name).write_bytes(photo.read_bytes())
        lines.append(f'{name} {label}\n')
    (root / 'meta' / 'val.txt').write_text(''.join(lines))
    return root


def test_tools_test_with_onnx_gives_the_checkpoints_top1(tiny, images_dir, tmp_path):
    config, checkpoint, onnx_file, model = tiny
    photos = _photos(images_dir)
    preds = [r['pred_label'] for r in
             ImageClassificationInferencer(model)(photos, show_progress=False)]
    labels = [p if i % 2 else (p + 1) % 10 for i, p in enumerate(preds)]  # about half right
    data = _imagenet_folder(tmp_path / 'data', photos, labels)
    runs = {}
    models = [('pth', checkpoint, []), ('onnx', onnx_file, [])]
    if HAVE_OPENVINO:
        models.append(('openvino', onnx_file, ['--backend', 'openvino']))
    for name, weights, backend in models:
        out = tmp_path / f'{name}.json'
        cmd = [sys.executable, str(ROOT / 'tools/test.py'), str(config), str(weights), *backend,
               '--work-dir', str(tmp_path / name), '--out', str(out), '--cfg-options',
               f'test_dataloader.dataset.data_root={data}', 'test_dataloader.batch_size=4',
               'test_dataloader.num_workers=0']
        result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        top1 = float(re.search(r'\|\s*accuracy/top1\s*\|\s*([\d.]+)', result.stdout).group(1))
        runs[name] = top1, json.loads(out.read_text())
    expected_top1 = 100 * np.mean([p == t for p, t in zip(preds, labels)])
    assert runs['onnx'][0] == runs['pth'][0] == pytest.approx(expected_top1, abs=0.005)
    assert [r['pred_label'] for r in runs['onnx'][1]] == preds
    np.testing.assert_allclose([r['pred_score'] for r in runs['onnx'][1]],
                               [r['pred_score'] for r in runs['pth'][1]], atol=1e-5)
    if HAVE_OPENVINO:
        assert runs['openvino'][0] == runs['pth'][0]
        assert [r['pred_label'] for r in runs['openvino'][1]] == preds
        np.testing.assert_allclose([r['pred_score'] for r in runs['openvino'][1]],
                                   [r['pred_score'] for r in runs['pth'][1]], atol=1e-5)


def test_weights_over_the_protobuf_limit_go_to_an_external_file(tiny, images_dir, tmp_path,
                                                                monkeypatch):
    from mmclip.deployment import onnx_export
    _, _, _, model = tiny
    monkeypatch.setattr(onnx_export, '_INLINE_WEIGHTS_LIMIT', 1000)  # as if over 2 GB
    onnx_file = export_onnx(model, tmp_path / 'big.onnx')
    assert (tmp_path / 'big.onnx.data').stat().st_size > onnx_file.stat().st_size
    _check_graph_against_torch(model, onnx_file, _photos(images_dir)[:3])


def test_an_interrupted_export_leaves_the_previous_model(tiny, tmp_path, monkeypatch):
    _, _, _, model = tiny
    onnx_file = export_onnx(model, tmp_path / 'tiny.onnx')
    before = onnx_file.read_bytes()
    real_save = torch.onnx.ONNXProgram.save

    def save_then_fail(program, destination, **kwargs):
        real_save(program, destination, **kwargs)
        with open(destination, 'r+b') as f:
            f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx.ONNXProgram, 'save', save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(model, onnx_file)
    assert onnx_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['tiny.onnx']


# ---- an .onnx is a file from someone else -----------------------------------------------
# What hands an .onnx to a runtime: the check alone, ONNX Runtime, OpenVINO.
OPENERS = [pytest.param('check', id='check'), pytest.param('onnxruntime', id='onnxruntime'),
           pytest.param('openvino', id='openvino', marks=needs_openvino)]
W = np.arange(9, dtype=np.float32).reshape(3, 3)  # a tiny model's only weight: 36 bytes


def _open(opener: str, onnx_file: Path):
    from mmclip.deployment import check_onnx_file, compile_openvino
    return dict(check=check_onnx_file, onnxruntime=onnxruntime_classifier.create_session,
                openvino=compile_openvino)[opener](onnx_file)


def _external(tensor, **fields) -> None:
    """Move ``tensor``'s bytes out of the model: only ``fields`` (location, offset, length)
    say where they are."""
    import onnx
    tensor.ClearField('raw_data')
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in fields.items():
        tensor.external_data.add(key=key, value=str(value))


def _matmul_model(onnx_file: Path, classes: str = '["a", "b", "c"]', sparse=None,
                  constant=None, **w_external) -> Path:
    """float images [B, 3] @ w [3, 3] -> logits [B, 3], written as bytes (onnx.save would
    follow the external data); ``w_external``: w's external_data fields."""
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(W, 'w')
    if w_external:
        _external(w, **w_external)
    nodes = [helper.make_node('MatMul', ['images', 'w'], ['logits'])]
    if constant is not None:
        value = numpy_helper.from_array(W, 'c')
        _external(value, **constant)
        nodes.append(helper.make_node('Constant', [], ['unused'], name='const', value=value))
    graph = helper.make_graph(
        nodes, 'tiny', [helper.make_tensor_value_info('images', TensorProto.FLOAT, ['B', 3])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['B', 3])], [w])
    if sparse is not None:
        values = numpy_helper.from_array(W[0], 'sv')
        _external(values, **sparse)
        graph.sparse_initializer.append(helper.make_sparse_tensor(
            values, numpy_helper.from_array(np.array([0, 1, 2], np.int64), 'si'), [9]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    if classes is not None:
        model.metadata_props.add(key='mmclip.classes', value=classes)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    onnx_file.write_bytes(model.SerializeToString())
    return onnx_file


def _folders(tmp_path: Path):
    """(the model's folder, a folder beside it holding W's exact bytes as secret.bin):
    every reference below would load valid weights if it were followed."""
    model_dir, outside = tmp_path / 'model', tmp_path / 'outside'
    model_dir.mkdir()
    outside.mkdir()
    (outside / 'secret.bin').write_bytes(W.tobytes())
    return model_dir, outside


def _escaping_absolute(model_dir, outside):
    return _matmul_model(model_dir / 'm.onnx', location=outside / 'secret.bin'), 'absolute'


def _escaping_parent(model_dir, outside):
    return (_matmul_model(model_dir / 'm.onnx', location='../outside/secret.bin'),
            "outside the model's folder")


def _escaping_symlink(model_dir, outside):
    (model_dir / 'w.bin').symlink_to(outside / 'secret.bin')
    return _matmul_model(model_dir / 'm.onnx', location='w.bin'), "outside the model's folder"


def _escaping_symlinked_folder(model_dir, outside):
    (model_dir / 'weights').symlink_to(outside, target_is_directory=True)
    return (_matmul_model(model_dir / 'm.onnx', location='weights/secret.bin'),
            "outside the model's folder")


def _oversized_length(model_dir, outside):
    (model_dir / 'w.bin').write_bytes(W.tobytes())
    return (_matmul_model(model_dir / 'm.onnx', location='w.bin', offset=0, length=1 << 30),
            'holds 36 bytes')


def _offset_past_the_end(model_dir, outside):
    (model_dir / 'w.bin').write_bytes(W.tobytes())
    return (_matmul_model(model_dir / 'm.onnx', location='w.bin', offset=8, length=36),
            'holds 36 bytes')


def _short_file_without_length(model_dir, outside):
    (model_dir / 'w.bin').write_bytes(W.tobytes()[:20])  # a [3, 3] float32 needs 36
    return _matmul_model(model_dir / 'm.onnx', location='w.bin'), 'holds 20 bytes'


def _missing_data_file(model_dir, outside):
    return _matmul_model(model_dir / 'm.onnx', location='w.bin'), 'does not exist'


ESCAPES = {'absolute location': _escaping_absolute, '../ location': _escaping_parent,
           'symlink out of the folder': _escaping_symlink,
           'symlinked folder': _escaping_symlinked_folder,
           'length past the file': _oversized_length, 'offset past the file': _offset_past_the_end,
           'short file, no length': _short_file_without_length,
           'missing data file': _missing_data_file}


def _assert_one_line_naming(err: Exception, onnx_file: Path, tensor: str, expected: str):
    message = str(err)
    assert '\n' not in message
    assert str(onnx_file) in message and f"tensor {tensor!r}" in message
    assert expected in message


@pytest.mark.parametrize('opener', OPENERS)
@pytest.mark.parametrize('case', ESCAPES)
def test_external_data_outside_the_model_or_its_file_is_refused(case, opener, tmp_path):
    from mmclip.deployment import UnsafeOnnxError
    onnx_file, expected = ESCAPES[case](*_folders(tmp_path))
    with pytest.raises(UnsafeOnnxError) as err:
        _open(opener, onnx_file)
    _assert_one_line_naming(err.value, onnx_file, 'w', expected)


@pytest.mark.parametrize('opener', OPENERS)
def test_escaping_tensors_outside_the_initializers_are_refused(opener, tmp_path):
    """Sparse initializers and node attributes hold tensors too (ONNX Runtime < 1.28 did not
    check the sparse ones)."""
    from mmclip.deployment import UnsafeOnnxError
    model_dir, outside = _folders(tmp_path)
    for tensor, fields in (('sv (values)', dict(sparse=dict(location='../outside/secret.bin'))),
                           ('const.value', dict(constant=dict(location=outside / 'secret.bin')))):
        onnx_file = _matmul_model(model_dir / f'{tensor[:2]}.onnx', **fields)
        with pytest.raises(UnsafeOnnxError) as err:
            _open(opener, onnx_file)
        _assert_one_line_naming(err.value, onnx_file, tensor, '')


@pytest.mark.parametrize('opener', OPENERS)
def test_a_model_bigger_than_protobuf_allows_is_refused_unparsed(opener, tmp_path, monkeypatch):
    import onnx

    from mmclip.deployment import UnsafeOnnxError, onnx_check
    onnx_file = _matmul_model(tmp_path / 'm.onnx')
    monkeypatch.setattr(onnx_check, 'MAX_ONNX_BYTES', onnx_file.stat().st_size - 1)
    monkeypatch.setattr(onnx, 'load', lambda *a, **k: pytest.fail('parsed an oversized file'))
    with pytest.raises(UnsafeOnnxError, match=f'^{re.escape(str(onnx_file))}: .* more than an '):
        _open(opener, onnx_file)


@pytest.mark.parametrize('opener', OPENERS)
@pytest.mark.parametrize('fields', [dict(offset=4, length=36), {}], ids=['offset', 'no length'])
def test_a_model_with_its_weights_beside_it_still_loads(fields, opener, tmp_path):
    model_dir, _ = _folders(tmp_path)
    (model_dir / 'w.bin').write_bytes(b'\0' * fields.get('offset', 0) + W.tobytes())
    onnx_file = _matmul_model(model_dir / 'm.onnx', location='w.bin', **fields)
    runtime = _open(opener, onnx_file)
    if opener == 'check':
        assert runtime.classes == ('a', 'b', 'c')
        return
    x = np.eye(3, dtype=np.float32)
    logits = (runtime.run(None, {'images': x})[0] if opener == 'onnxruntime'
              else runtime({0: x})[0])
    np.testing.assert_array_equal(logits, W)


BAD_CLASSES = {'a string, not a list': ('"abc"', 'must be a list of class-name strings; got str'),
               'not JSON': ('[a, b, c]', 'is not JSON'),
               'numbers': ('[1, 2, 3]', 'must be a list of class-name strings; got list'),
               'fewer names than scores': ('["a", "b"]', 'names 2 classes but the model '
                                           'outputs 3 scores per image')}


@pytest.mark.parametrize('backend', ['onnxruntime',
                                     pytest.param('openvino', marks=needs_openvino)])
@pytest.mark.parametrize('case', BAD_CLASSES)
def test_class_names_in_the_metadata_are_data(case, backend, tmp_path):
    from mmclip.deployment import EXPORTED_BACKENDS, OnnxMetadataError
    classes, expected = BAD_CLASSES[case]
    onnx_file = _matmul_model(tmp_path / 'm.onnx', classes=classes)
    with pytest.raises(OnnxMetadataError) as err:
        EXPORTED_BACKENDS[backend](str(onnx_file))
    message = str(err.value)
    assert '\n' not in message and message.startswith(f"{onnx_file}: metadata 'mmclip.classes'")
    assert expected in message


def test_onnx_metadata_of_a_session_is_checked_too(tmp_path):
    from mmclip.deployment import OnnxMetadataError
    session = onnxruntime_classifier._new_session(
        _matmul_model(tmp_path / 'm.onnx', classes='["a", "b"]'), 'cpu', 1)
    with pytest.raises(OnnxMetadataError, match='names 2 classes .* outputs 3 scores'):
        onnxruntime_classifier.onnx_metadata(session)


def test_tools_test_refuses_an_escaping_model_in_one_line(tiny, tmp_path):
    config = tiny[0]
    onnx_file, _ = _escaping_parent(*_folders(tmp_path))
    for backend in ['onnxruntime'] + (['openvino'] if HAVE_OPENVINO else []):
        cmd = [sys.executable, str(ROOT / 'tools/test.py'), str(config), str(onnx_file),
               '--backend', backend, '--work-dir', str(tmp_path / backend)]
        result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
        lines = [line for line in (result.stdout + result.stderr).splitlines() if 'ERROR' in line]
        assert len(lines) == 1 and 'Traceback' not in result.stderr
        assert str(onnx_file) in lines[0] and "tensor 'w'" in lines[0]


# ---- OpenVINO ----------------------------------------------------------------------------
@needs_openvino
def test_two_openvino_models_leave_signal_handling_working(tiny):
    """OpenVINO's CPU plugin leaves the thread that made two of them, released in the order
    made, on an alternate signal stack it has unmapped: without mmclip's guard the SIGCHLD
    handler torch's DataLoader installs (or Ctrl-C's) then ends the process in SIGSEGV."""
    script = (
        'import faulthandler, gc, signal, subprocess, sys\n'
        'faulthandler.enable()\n'  # a stack of Python's own on the main thread, as pytest has
        'from mmclip.deployment import build_openvino_classifier\n'
        'models = [build_openvino_classifier(sys.argv[1], sys.argv[2], threads=1) '
        'for _ in range(2)]\n'
        'del models[0]; gc.collect(); del models[0]; gc.collect()\n'
        'signal.signal(signal.SIGCHLD, lambda *args: None)\n'
        'subprocess.run(["true"], check=True)\n'
        'print("signals still handled")\n')
    config, _, onnx_file, _ = tiny
    result = subprocess.run([sys.executable, '-c', script, str(config), str(onnx_file)],
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == 'signals still handled'


@needs_openvino
def test_openvino_runs_the_export_in_fp32_unless_bf16_is_asked_for(tiny, images_dir):
    import openvino as ov

    from mmclip.deployment import build_openvino_classifier
    config, _, onnx_file, model = tiny
    photos = _photos(images_dir)
    batch = _pipeline_batch(model, photos)
    with torch.no_grad():
        expected = model(model.data_preprocessor(batch, False)['inputs'])
    runs = {}
    for precision in ('fp32', 'bf16'):
        ov_model = build_openvino_classifier(config, onnx_file, threads=1, precision=precision)
        hint = ov_model.compiled.get_property('INFERENCE_PRECISION_HINT')
        assert hint == (ov.Type.f32 if precision == 'fp32' else ov.Type.bf16)
        runs[precision] = ov_model(ov_model.data_preprocessor(batch, False)['inputs'])
    assert (runs['fp32'] - expected).abs().max() <= TOL
    assert (runs['bf16'] - expected).abs().max() <= 0.05 * expected.abs().max()
    torch_results = ImageClassificationInferencer(model)(photos, show_progress=False)
    ov_results = inference_model(str(config), photos, pretrained=str(onnx_file), batch_size=4,
                                 backend='openvino')
    assert [r['pred_label'] for r in ov_results] == [r['pred_label'] for r in torch_results]
    np.testing.assert_allclose(np.stack([r['pred_scores'] for r in ov_results]),
                               np.stack([r['pred_scores'] for r in torch_results]), atol=1e-5)


@needs_openvino
def test_openvino_backend_rejects_what_it_cannot_run(tiny, capsys):
    config, checkpoint, onnx_file, _ = tiny
    with pytest.raises(ValueError, match="backend='openvino' needs pretrained=<an .onnx"):
        ImageClassificationInferencer(str(config), pretrained=str(checkpoint),
                                      backend='openvino')
    with pytest.raises(ValueError, match='the OpenVINO backend runs on the CPU'):
        ImageClassificationInferencer(str(config), pretrained=str(onnx_file),
                                      backend='openvino', device='cuda')
    tool = _load_test_tool()
    for argv, expected in (([str(checkpoint), '--backend', 'openvino'], 'runs an exported .onnx'),
                           ([str(onnx_file), '--backend', 'openvino', '--precision', 'fp16'],
                            'runs an .onnx in fp32 or bf16'),
                           ([str(onnx_file), '--backend', 'onnxruntime', '--precision',
                             'bf16'], '--backend onnxruntime runs an .onnx in fp32')):
        with pytest.raises(SystemExit):
            tool.parse_args([str(config), *argv])
        assert expected in capsys.readouterr().err


def test_an_onnx_runs_in_openvino_on_the_cpu_where_installed(tiny, monkeypatch):
    """The default runtime of an .onnx: OpenVINO on the CPU where its extra is installed
    (measured fastest, docs/benchmarks.md), else ONNX Runtime, and ONNX Runtime on CUDA."""
    from mmclip.apis.backends import choose_backend, default_backend
    from mmclip.deployment import EXPORTED_BACKENDS, MissingExtraError
    _, checkpoint, onnx_file, _ = tiny
    assert default_backend(str(checkpoint)) == 'torch'
    assert default_backend(str(onnx_file), 'cuda:0') == 'onnxruntime'
    expected = 'openvino' if HAVE_OPENVINO else 'onnxruntime'
    assert default_backend(str(onnx_file)) == default_backend(str(onnx_file), 'cpu') == expected
    assert choose_backend(str(onnx_file), precision='bf16' if HAVE_OPENVINO else 'fp32') == \
        expected

    def missing():
        raise MissingExtraError('openvino is not installed')

    monkeypatch.setattr(EXPORTED_BACKENDS['openvino'], 'require', missing)
    assert default_backend(str(onnx_file), 'cpu') == 'onnxruntime'


def _load_test_tool():
    spec = importlib.util.spec_from_file_location('mmclip_test_tool_onnx',
                                                  ROOT / 'tools' / 'test.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_openvino
def test_benchmark_times_the_export_in_both_runtimes(tiny, tmp_path):
    config = tiny[0]
    out = tmp_path / 'speed.json'
    cmd = [sys.executable, str(ROOT / 'tools/analysis_tools/benchmark.py'), str(config),
           '--backend', 'onnxruntime', 'openvino', '--precision', 'fp32', 'bf16', '--device',
           'cpu', '--batch-size', '2', '--threads', '1', '--warmup', '0', '--iters', '2',
           '--out', str(out)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())['model_only']['results']
    assert sorted(results) == ['onnxruntime fp32', 'openvino bf16', 'openvino fp32']
    assert all(r['batches'] == 2 and r['images_per_s'] > 0 for r in results.values())
