"""ONNX export and the ONNX Runtime backend against PyTorch on the real photos.

The graph takes uint8 RGB images and embeds the normalisation; its logits must equal
PyTorch's within 1e-4 (fp32) for ViT-B/32 and a tiny arch, through the library, the
inferencer and tools/test.py (same top-1 and per-image predictions as the checkpoint).
"""
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
from mmclip.deployment import (
                               MissingExtraError,
                               export_onnx,
                               exported_classifier,
                               onnxruntime_classifier,
)

ort = pytest.importorskip('onnxruntime')
ROOT = Path(__file__).resolve().parents[1]
B32 = ROOT / 'configs' / 'clip' / 'vit-base-p32_pt-64xb64_in1k.py'
TOL = 1e-4


def _photos(images_dir):
    return sorted(p for p in images_dir.iterdir() if p.suffix in ('.png', '.jpg'))


def _pipeline_batch(model, paths):
    pipeline, _ = ImageClassificationInferencer._build_pipelines(model.cfg)
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
    for name, weights in (('pth', checkpoint), ('onnx', onnx_file)):
        out = tmp_path / f'{name}.json'
        cmd = [sys.executable, str(ROOT / 'tools/test.py'), str(config), str(weights),
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
