"""tools/test.py and tools/dist_test.sh end to end, against timm's own predictions.

A temporary ImageNet-format folder is built from the real photos (rescaled and cropped to
ImageNet-like sizes; grayscale and RGBA among them, the RGBA one as PNG content behind a
.JPEG name), and a random timm ViT-B/32 is converted and saved as the checkpoint. Each
image's label is picked from timm's ranking of it (its top-1, its 3rd class, or its last
class), so the expected top-1 / top-5 are known before tools/test.py runs.
"""
import importlib.util
import json
import os
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from PIL import Image
from timm.data import create_transform, resolve_data_config

from mmclip.checkpoint import convert_timm_state_dict
from mmclip.cli.launch import DEFAULT_DIST_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted(p for p in (ROOT / 'tests' / 'data' / 'images').iterdir()
                if p.suffix in ('.png', '.jpg'))
CONFIG = ROOT / 'configs' / 'clip' / 'vit-base-p32_clip-openai-pre_3rdparty_in1k.py'
TIMM_NAME = 'vit_base_patch32_clip_224.openai_ft_in1k'
# ImageNet-like (width, height) per photo; several aspect ratios and orientations.
SIZES = [(500, 375), (375, 500), (500, 333), (640, 480), (500, 500), (333, 500)]


def _imagenet_like(path: Path, index: int) -> Image.Image:
    with Image.open(path) as img:
        img.load()
    w, h = img.size
    if index % 2:  # crop a corner region first, then rescale
        img = img.crop((w // 8, h // 10, w - w // 5, h - h // 7))
    return img.resize(SIZES[index % len(SIZES)], Image.BICUBIC)


def _timm_batch(model, files) -> torch.Tensor:
    transform = create_transform(**resolve_data_config(model=model))
    return torch.stack([transform(Image.open(f).convert('RGB')) for f in files])


@torch.no_grad()
def _spread_predictions(model, batch: torch.Tensor) -> None:
    """A random ViT gives every image nearly the same feature, so its head would predict
    one class for all. Centre the head on these images' mean feature (bias = -W @ mean)
    and scale it to logits of std 3, so that each image gets its own ranking."""
    feats = model.forward_head(model.forward_features(batch), pre_logits=True)
    weight = torch.randn(model.head.weight.shape)
    weight *= 3 / ((feats - feats.mean(0)) @ weight.T).std()
    model.head.weight.copy_(weight)
    model.head.bias.copy_(-weight @ feats.mean(0))


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """(data_root, checkpoint, files, timm softmax [N, 1000], labels)."""
    root = tmp_path_factory.mktemp('imagenet')
    (root / 'val').mkdir()
    (root / 'meta').mkdir()
    files = []
    for i, path in enumerate(IMAGES):  # 11 photos: an odd dataset size
        img = _imagenet_like(path, i)
        out = root / 'val' / f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        img.save(out, format='PNG' if img.mode == 'RGBA' else 'JPEG', quality=90)
        files.append(out)
    modes = {Image.open(f).mode for f in files}
    assert {'RGB', 'L', 'RGBA'} <= modes

    torch.manual_seed(0)
    model = timm.create_model(TIMM_NAME, pretrained=False).eval()
    batch = _timm_batch(model, files)
    _spread_predictions(model, batch)
    with torch.no_grad():
        logits = model(batch)
    top2 = logits.topk(2).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-3, 'a near-tie would make top-1 ambiguous'
    assert len(set(logits.argmax(dim=1).tolist())) > 3, 'predictions should differ per image'
    probs = logits.softmax(dim=1)
    checkpoint = root / 'random_vit-b-32.pth'
    torch.save(convert_timm_state_dict(model.state_dict()), checkpoint)

    order = probs.argsort(dim=1, descending=True)
    # top-1 hit, top-5-only hit, miss, in turn.
    labels = [int(order[i, [0, 2, -1][i % 3]]) for i in range(len(files))]
    (root / 'meta' / 'val.txt').write_text(
        ''.join(f'{f.name} {label}\n' for f, label in zip(files, labels)))
    return root, checkpoint, files, probs, labels


def _options(data_root: Path):
    return ['--cfg-options', f'test_dataloader.dataset.data_root={data_root}',
            'test_dataloader.batch_size=4', 'test_dataloader.num_workers=0',
            'default_hooks.logger.interval=1']


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _run_test_py(checkpoint, work_dir, *extra, data_root, extra_options=(), config=CONFIG):
    cmd = [sys.executable, str(ROOT / 'tools' / 'test.py'), str(config), str(checkpoint),
           '--work-dir', str(work_dir), *extra, *_options(data_root), *extra_options]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def _table_value(output: str, key: str) -> float:
    match = re.search(rf'\|\s*{re.escape(key)}\s*\|\s*([\d.]+)\s*\|', output)
    assert match, f'no {key} row in the metrics table:\n{output[-3000:]}'
    return float(match.group(1))


def _expected(labels, probs):
    order = probs.argsort(dim=1, descending=True)
    top1 = np.mean([order[i, 0] == label for i, label in enumerate(labels)]) * 100
    top5 = np.mean([label in order[i, :5] for i, label in enumerate(labels)]) * 100
    return top1, top5


def _check_predictions(records, files, probs, labels):
    assert [Path(r['img_path']).name for r in records] == [f.name for f in files]
    assert [r['gt_label'] for r in records] == labels
    assert [r['pred_label'] for r in records] == probs.argmax(dim=1).tolist()
    np.testing.assert_allclose([r['pred_score'] for r in records],
                               probs.max(dim=1).values.numpy(), atol=1e-4)


@pytest.fixture(scope='module')
def single_process(setup, tmp_path_factory):
    root, checkpoint, *_ = setup
    work = tmp_path_factory.mktemp('single')
    result = _run_test_py(checkpoint, work, '--out', str(work / 'preds.json'), data_root=root,
                          extra_options=['+test_evaluator.per_class=True'])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    (log_json, ) = work.glob('*/*.json')
    return (result.stdout + result.stderr, json.loads((work / 'preds.json').read_text()),
            json.loads(log_json.read_text()))


def test_top1_top5_and_predictions_match_timm(setup, single_process):
    _, _, files, probs, labels = setup
    output, records, logged = single_process
    top1, top5 = _expected(labels, probs)
    assert (round(top1, 2), round(top5, 2)) == (round(100 * 4 / 11, 2), round(100 * 8 / 11, 2))
    assert _table_value(output, 'accuracy/top1') == pytest.approx(top1, abs=0.005)
    assert _table_value(output, 'accuracy/top5') == pytest.approx(top5, abs=0.005)
    assert _table_value(output, 'accuracy/num_images') == len(files)
    assert _table_value(output, 'accuracy/num_skipped') == 0
    assert 'Epoch(test) [1/3]' in output  # progress
    _check_predictions(records, files, probs, labels)
    # Per-class top-1 goes to the JSON log: NaN for classes without images.
    pred = probs.argmax(dim=1).numpy()
    per_class = np.array(logged['accuracy/per_class'], dtype=float)
    for c in range(1000):
        mask = np.array(labels) == c
        want = 100 * np.mean(pred[mask] == c) if mask.any() else np.nan
        np.testing.assert_allclose(per_class[c], want)



def test_amp_gives_the_fp32_top1_within_one_image(setup, single_process, tmp_path):
    root, _, files, _, _ = setup
    _, fp32_records, _ = single_process
    checkpoint = setup[1]
    result = _run_test_py(checkpoint, tmp_path, '--amp', '--out', str(tmp_path / 'p.json'),
                          data_root=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = json.loads((tmp_path / 'p.json').read_text())
    assert len(records) == len(files)
    differ = sum(a['pred_label'] != b['pred_label'] for a, b in zip(records, fp32_records))
    assert differ <= 1
    # bf16 autocast really ran: scores move, but stay close.
    gaps = [abs(a['pred_score'] - b['pred_score']) for a, b in zip(records, fp32_records)]
    assert 0 < max(gaps) < 0.05

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _dist_test(checkpoint, work_dir, *extra, data_root):
    cmd = ['bash', str(ROOT / 'tools' / 'dist_test.sh'), str(CONFIG), str(checkpoint), '2',
           '--work-dir', str(work_dir), *extra, *_options(data_root)]
    for _ in range(3):  # another process may take the free port before torchrun binds it
        env = dict(_env(), PORT=str(_free_port()))
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if 'address already in use' not in (result.stdout + result.stderr).lower():
            break
    return result


def test_two_processes_give_the_single_process_results(setup, single_process, tmp_path):
    root, checkpoint, files, probs, labels = setup
    output, _, _ = single_process
    result = _dist_test(checkpoint, tmp_path, '--out', str(tmp_path / 'preds.json'),
                        data_root=root)
    dist_output = result.stdout + result.stderr
    assert result.returncode == 0, dist_output[-5000:]
    assert 'Warning' not in result.stderr, result.stderr
    for key in ('top1', 'top5', 'num_images', 'num_skipped'):
        key = 'accuracy/' + key
        assert _table_value(dist_output, key) == _table_value(output, key)
    dist_records = json.loads((tmp_path / 'preds.json').read_text())
    # 11 images on 2 ranks: the sampler pads rank 1 with image 1 again; it counts once.
    _check_predictions(dist_records, files, probs, labels)
    # Rank 0 alone shows progress: each of its 2 iterations is logged once.
    assert dist_output.count('Epoch(test) [1/2]') == 1


def _bad_folder(setup, tmp_path, names):
    """A copy of the val set (by symlink) plus unreadable files at the given positions."""
    root, _, files, _, labels = setup
    bad_root = tmp_path / 'imagenet'
    (bad_root / 'val').mkdir(parents=True)
    (bad_root / 'meta').mkdir()
    for f in files:
        (bad_root / 'val' / f.name).symlink_to(f)
    good = files[0].read_bytes()
    contents = {'truncated': good[:len(good) // 3], 'empty': b'', 'text': b'label,file\n'}
    lines = [f'{f.name} {label}' for f, label in zip(files, labels)]
    for position, kind in names:
        name = f'bad_{kind}.JPEG'
        (bad_root / 'val' / name).write_bytes(contents[kind])
        lines.insert(position, f'{name} 0')
    (bad_root / 'meta' / 'val.txt').write_text('\n'.join(lines) + '\n')
    return bad_root


def test_unreadable_image_stops_the_run_naming_the_file(setup, tmp_path):
    bad_root = _bad_folder(setup, tmp_path, [(5, 'truncated')])
    # Through DataLoader workers, whose exceptions reach the main process re-wrapped.
    result = _run_test_py(setup[1], tmp_path / 'work', data_root=bad_root,
                          extra_options=['test_dataloader.num_workers=2'])
    output = result.stdout + result.stderr
    assert result.returncode == 1
    path = bad_root / 'val' / 'bad_truncated.JPEG'
    assert f"Cannot read image '{path}': image file is truncated" in output
    assert 'Traceback' not in output  # one clear line, not a worker's stack
    assert '--skip-bad-images' in output


def test_skip_bad_images_reports_each_and_counts_them(setup, tmp_path):
    _, checkpoint, files, probs, labels = setup
    bad_root = _bad_folder(setup, tmp_path, [(0, 'empty'), (4, 'text'), (9, 'truncated')])
    # Loaded in DataLoader workers: the reason travels with the sample to the metric.
    result = _run_test_py(checkpoint, tmp_path / 'work', '--skip-bad-images', '--out',
                          str(tmp_path / 'preds.pkl'), data_root=bad_root,
                          extra_options=['test_dataloader.num_workers=2'])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for kind in ('empty', 'text', 'truncated'):
        path = bad_root / 'val' / f'bad_{kind}.JPEG'
        assert output.count(f"Skipped: Cannot read image '{path}'") == 1
    assert _table_value(output, 'accuracy/num_skipped') == 3
    assert _table_value(output, 'accuracy/num_images') == len(files)
    top1, top5 = _expected(labels, probs)
    assert _table_value(output, 'accuracy/top1') == pytest.approx(top1, abs=0.005)
    assert _table_value(output, 'accuracy/top5') == pytest.approx(top5, abs=0.005)
    records = pickle.loads((tmp_path / 'preds.pkl').read_bytes())
    assert [i for i, r in enumerate(records) if r['load_error']] == [0, 4, 9]
    _check_predictions([r for r in records if not r['load_error']], files, probs, labels)


def test_missing_data_root_is_one_clear_error(setup, tmp_path):
    missing = tmp_path / 'no_imagenet_here'
    result = _run_test_py(setup[1], tmp_path / 'work', data_root=missing)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"data_root '{missing}' does not exist. Expected one of two layouts" in output
    assert 'Traceback' not in output


def test_a_failing_rank_fails_the_whole_distributed_run(setup, tmp_path):
    # Position 1 of 12 goes to rank 1 (DefaultSampler deals indices round-robin).
    bad_root = _bad_folder(setup, tmp_path, [(1, 'text')])
    result = _dist_test(setup[1], tmp_path / 'work', data_root=bad_root)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Cannot read image '{bad_root / 'val' / 'bad_text.JPEG'}'" in output
    # One line from the failing rank, naming it; no launcher report (issue 22).
    errors = [line for line in output.splitlines() if 'ERROR' in line]
    victim = bad_root / 'val' / 'bad_text.JPEG'
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith(f"ERROR: rank 1: Cannot read image '{victim}'"), errors
    assert 'Traceback' not in output and 'Root Cause' not in output


def test_a_hanging_rank_times_out_instead_of_hanging(setup, tmp_path):
    # Rank 1 blocks forever opening a named pipe; rank 0 finishes and waits for it in the
    # results gather, which must give up after env_cfg.dist_cfg.timeout seconds.
    bad_root = _bad_folder(setup, tmp_path, [(1, 'text')])
    fifo = bad_root / 'val' / 'bad_text.JPEG'
    fifo.unlink()
    os.mkfifo(fifo)
    result = _dist_test(setup[1], tmp_path / 'work', '--cfg-options',
                        'env_cfg.dist_cfg.timeout=5', data_root=bad_root)
    assert result.returncode != 0
    assert 'timed out' in (result.stdout + result.stderr).lower()


def test_resampled_position_embedding_is_announced(setup, tmp_path):
    root, checkpoint, files, _, _ = setup
    seed_384 = ROOT / 'configs' / 'clip' / 'vit-base-p32_pt-64xb64_in1k-384px.py'
    result = _run_test_py(checkpoint, tmp_path / 'work', data_root=root, config=seed_384)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert re.search(r'WARNING - Resampled backbone\.pos_embed .* from a 7x7 to a 12x12', output)
    assert _table_value(output, 'accuracy/num_images') == len(files)


def _load_tool():
    spec = importlib.util.spec_from_file_location('mmclip_test_tool', ROOT / 'tools' / 'test.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line_options_reach_the_config(tmp_path):
    tool = _load_tool()
    args = tool.parse_args([str(CONFIG), 'ckpt.pth', '--out', str(tmp_path / 'p.json'),
                            '--skip-bad-images', '--launcher', 'pytorch', '--cfg-options',
                            'env_cfg.dist_cfg.timeout=60'])
    original = Config.fromfile(CONFIG)
    cfg = tool.merge_args(original, args)
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[0] == dict(type='LoadImageFromFile', on_error='skip')
    assert original.test_dataloader.dataset.pipeline[0] == dict(type='LoadImageFromFile')
    assert cfg.test_evaluator[-1] == dict(type='DumpPredictions', out_file=str(tmp_path / 'p.json'))
    assert cfg.env_cfg.dist_cfg.timeout == 60
    assert cfg.load_from is None
    default = tool.merge_args(original, tool.parse_args([str(CONFIG), 'c.pth', '--launcher',
                                                         'pytorch']))
    assert default.env_cfg.dist_cfg.timeout == DEFAULT_DIST_TIMEOUT_S
    with pytest.raises(ValueError, match=r"\('.json', '.pkl'\)"):
        tool.parse_args([str(CONFIG), 'c.pth', '--out', 'preds.txt'])


def test_a_zoo_name_stands_for_its_config_and_weights(tmp_path):
    from mmclip.apis import get_model_info
    tool = _load_tool()
    name = 'vit-base-p32_clip-openai-pre_3rdparty_in1k'
    info = get_model_info(name)
    cfg, checkpoint = tool.config_and_checkpoint(tool.parse_args([name]))
    assert cfg.filename == info.config and checkpoint == info.sources
    assert checkpoint[0] == info.weights and len(checkpoint) == 2  # published, then timm's
    cfg, checkpoint = tool.config_and_checkpoint(tool.parse_args([name, 'mine.pth']))
    assert cfg.filename == info.config and checkpoint == 'mine.pth'
    merged = tool.merge_args(cfg, tool.parse_args([name, '--data-root', str(tmp_path)]))
    assert merged.work_dir == osp.join('./work_dirs', name)
    assert merged.test_dataloader.dataset.data_root == str(tmp_path)


def test_default_console_is_short_and_the_log_file_keeps_the_rest(setup, tmp_path):
    root, checkpoint, files, _, _ = setup
    # Only the data root: the config's own worker count, batch size and log interval.
    cmd = [sys.executable, str(ROOT / 'tools' / 'test.py'), str(CONFIG), str(checkpoint),
           '--data-root', str(root), '--work-dir', str(tmp_path)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    assert len(console.splitlines()) < 40, console
    device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    assert f'on {len(files)} images: device {device}, precision fp32' in console
    assert _table_value(console, 'accuracy/num_images') == len(files)
    for noise in ('suggested max number of worker', 'Warning', 'Config:') + (
            ('GPU', ) if device == 'cpu' else ()):
        assert noise not in console
    (log, ) = tmp_path.glob('*/*.log')
    text = log.read_text()
    assert 'Config:' in text and 'System environment:' in text and 'Hooks will be executed' in text
