"""tools/train.py end to end on a tiny ViT and a folder dataset built from tests/data/images.

Every run is a real mmengine Runner: loss goes down, a stopped run resumes to exactly the
state of an uninterrupted one, two CPU processes train through tools/dist_train.sh, a
10-class fine-tune starts from a 1000-class checkpoint, and the checkpoints load back
(resume, tools/test.py) under torch's weights_only default.
"""
import importlib.util
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.registry import DefaultScope
from PIL import Image

from mmclip.checkpoint import load_checkpoint
from mmclip.registry import DATASETS, MODELS

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 10
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
CLIP_MEAN = [122.770938, 116.7460125, 104.09373615]
CLIP_STD = [68.5005327, 66.6321579, 70.32316305]
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'tools_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_tool = _load_tool('train')


def run_train(argv: list) -> None:
    assert train_tool.main(argv) == 0


@pytest.fixture(scope='module')
def data_root(tmp_path_factory, images_dir) -> Path:
    """``train/class_<i>/<photo>``: the real photos (RGB, gray, RGBA) shrunk to 48 px."""
    root = tmp_path_factory.mktemp('folder_dataset')
    photos = sorted(p for p in images_dir.iterdir()
                    if p.suffix.lower() in ('.png', '.jpg', '.jpeg'))
    assert len(photos) >= NUM_CLASSES
    for i, photo in enumerate(photos):
        folder = root / 'train' / f'class_{i % NUM_CLASSES}'
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(photo) as img:
            img.thumbnail((48, 48))
            img.save(folder / photo.name)
    return root


def tiny_cfg(data_root: Path, name: str, num_classes: int = NUM_CLASSES, max_iters: int = 8,
             lr: float = 1e-3, checkpoint_interval: int = 4) -> dict:
    dataset = dict(type='CustomDataset', data_root=str(data_root), data_prefix='train',
                   pipeline=PIPELINE)
    return dict(
        default_scope='mmclip',
        experiment_name=name,  # one logger / visualizer per run in this process
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='VisionTransformer', arch=TINY_ARCH, img_size=32, patch_size=16,
                          pre_norm=True, norm_cfg=dict(type='LN', eps=1e-5)),
            head=dict(type='VisionTransformerClsHead', num_classes=num_classes, in_channels=32)),
        data_preprocessor=dict(num_classes=num_classes, mean=CLIP_MEAN, std=CLIP_STD, to_rgb=True),
        train_dataloader=dict(batch_size=4, num_workers=0, dataset=dataset,
                              sampler=dict(type='InfiniteSampler', shuffle=True)),
        test_dataloader=dict(batch_size=4, num_workers=0, dataset=dataset,
                             sampler=dict(type='DefaultSampler', shuffle=False)),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        test_cfg=dict(),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05),
            constructor='LearningRateDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.8), clip_grad=dict(max_norm=1.0)),
        # Fixed in iterations, so a 4-iteration run follows the 8-iteration schedule.
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
            dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=False, begin=2,
                 end=max(max_iters, 8)),
        ],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        log_processor=dict(by_epoch=False),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            param_scheduler=dict(type='ParamSchedulerHook'),
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=checkpoint_interval,
                            by_epoch=False)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
    )


def write_cfg(cfg: dict, path: Path) -> str:
    Config(cfg).dump(str(path))
    return str(path)


def build_model(cfg: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model_cfg = dict(cfg['model'], data_preprocessor=cfg['data_preprocessor'])
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.eval()


def fixed_batch(data_root: Path, size: int = 8) -> dict:
    with DefaultScope.overwrite_default_scope('mmclip'):
        dataset = DATASETS.build(dict(type='CustomDataset', data_root=str(data_root),
                                      data_prefix='train', pipeline=PIPELINE))
    items = [dataset[i] for i in range(size)]
    return dict(inputs=[x['inputs'] for x in items],
                data_samples=[x['data_samples'] for x in items])


def loss_on(model: torch.nn.Module, batch: dict) -> float:
    with torch.no_grad():
        data = model.data_preprocessor(batch, training=False)
        return model(**data, mode='loss')['loss'].item()


def read_log(work_dir: Path) -> str:
    return '\n'.join(p.read_text() for p in sorted(work_dir.rglob('*.log')))


def read_training_checkpoint(path: Path) -> dict:
    """The whole checkpoint, read as resume reads it (mmclip's safe reader)."""
    from mmclip.checkpoint import read_checkpoint_file
    return read_checkpoint_file(str(path))


def test_twenty_iterations_lower_the_loss_on_a_fixed_batch(data_root, tmp_path):
    cfg = tiny_cfg(data_root, 'loss_goes_down', max_iters=20, lr=1e-2, checkpoint_interval=20)
    initial = build_model(cfg, seed=0)
    torch.save({'state_dict': initial.state_dict()}, tmp_path / 'init.pth')
    cfg['load_from'] = str(tmp_path / 'init.pth')
    run_train([write_cfg(cfg, tmp_path / 'cfg.py'), '--work-dir', str(tmp_path / 'work')])

    trained = build_model(cfg, seed=1)
    load_checkpoint(trained, str(tmp_path / 'work' / 'iter_20.pth'), strict=True)
    batch = fixed_batch(data_root)
    before, after = loss_on(initial, batch), loss_on(trained, batch)
    assert after < 0.8 * before, (before, after)


def _assert_same_state(a: dict, b: dict, path: str = '') -> None:
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same_state(a[key], b[key], f'{path}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f'{path}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


def test_resume_after_four_iterations_equals_eight_uninterrupted(data_root, tmp_path):
    straight = tiny_cfg(data_root, 'straight')
    run_train([write_cfg(straight, tmp_path / 'straight.py'),
                     '--work-dir', str(tmp_path / 'straight')])

    stopped = write_cfg(tiny_cfg(data_root, 'stopped', max_iters=4), tmp_path / 'stopped.py')
    run_train([stopped, '--work-dir', str(tmp_path / 'resumed')])
    resumed = write_cfg(tiny_cfg(data_root, 'resumed'), tmp_path / 'resumed.py')
    run_train([resumed, '--work-dir', str(tmp_path / 'resumed'), '--resume'])

    log = read_log(tmp_path / 'resumed')
    assert 'resumed' in log.lower()
    # The second run trained iterations 5..8 only: it resumed, it did not start over.
    second_run_log = sorted((tmp_path / 'resumed').rglob('*.log'))[-1].read_text()
    assert sorted(set(map(int, re.findall(r'Iter\(train\) \[\s*(\d+)/8\]', second_run_log)))) \
        == [5, 6, 7, 8]

    a = read_training_checkpoint(tmp_path / 'straight' / 'iter_8.pth')
    b = read_training_checkpoint(tmp_path / 'resumed' / 'iter_8.pth')
    # More than tensors (mmengine's logged-scalar buffers), read with weights_only on.
    assert isinstance(b['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    # mmclip saves them as plain data: torch's own allow-list reads the file as it is.
    with open(tmp_path / 'resumed' / 'iter_8.pth', 'rb') as f:
        plain = torch.load(f, weights_only=True)
    assert not isinstance(plain['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert not os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')
    assert a['meta']['iter'] == b['meta']['iter'] == 8
    _assert_same_state(a['state_dict'], b['state_dict'], 'state_dict')
    _assert_same_state(a['optimizer'], b['optimizer'], 'optimizer')
    _assert_same_state(a['param_schedulers'], b['param_schedulers'], 'param_schedulers')
    lrs = [g['lr'] for g in b['optimizer']['param_groups']]
    assert len(set(lrs)) > 1, 'layer-wise decay gives the groups different LRs'
    assert a['state_dict'].keys() and not all(
        torch.equal(v, w) for v, w in zip(a['state_dict'].values(),
                                          build_model(straight).state_dict().values()))


def test_finetune_ten_classes_from_a_thousand_class_checkpoint(data_root, tmp_path):
    source = build_model(tiny_cfg(data_root, 'source', num_classes=1000), seed=3)
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'in1k.pth')
    # lr 0: the weights after training are exactly the weights that were loaded.
    cfg = tiny_cfg(data_root, 'finetune', max_iters=2, lr=0.0, checkpoint_interval=2)
    cfg['custom_hooks'] = [dict(type='LoadPretrainedHook', checkpoint=str(tmp_path / 'in1k.pth'))]
    path = write_cfg(cfg, tmp_path / 'ft.py')
    run_train([path, '--work-dir', str(tmp_path / 'work'), '--resume'])

    log = read_log(tmp_path / 'work')
    assert 'Dropped the head of pre-trained checkpoint' in log
    assert 'head.layers.head.weight: checkpoint (1000, 32) vs model (10, 32)' in log
    state = read_training_checkpoint(tmp_path / 'work' / 'iter_2.pth')['state_dict']
    assert state['head.layers.head.weight'].shape == (NUM_CLASSES, 32)
    backbone = {k: v for k, v in source.state_dict().items() if k.startswith('backbone.')}
    _assert_same_state(backbone, {k: state[k] for k in backbone}, 'backbone')

    # Re-submitting the same command continues from the checkpoint, not the zoo weights.
    cfg.update(experiment_name='finetune_again', train_cfg=dict(by_epoch=False, max_iters=4))
    path = write_cfg(cfg, tmp_path / 'ft_again.py')
    run_train([path, '--work-dir', str(tmp_path / 'work'), '--resume'])
    last_log = sorted((tmp_path / 'work').rglob('*.log'))[-1].read_text()
    assert 'LoadPretrainedHook' in last_log and 'skip' in last_log.lower()
    assert (tmp_path / 'work' / 'iter_4.pth').is_file()


def test_training_checkpoint_evaluates_with_tools_test(data_root, tmp_path):
    cfg = tiny_cfg(data_root, 'for_test_py', max_iters=4, lr=3e-3)
    run_train([write_cfg(cfg, tmp_path / 'cfg.py'), '--work-dir', str(tmp_path / 'work')])
    checkpoint = tmp_path / 'work' / 'iter_4.pth'

    model = build_model(cfg, seed=5)
    load_checkpoint(model, str(checkpoint), strict=True)
    batch = fixed_batch(data_root, size=len(list((data_root / 'train').rglob('*.*'))))
    with torch.no_grad():
        data = model.data_preprocessor(batch, training=False)
        predicted = model(data['inputs']).argmax(1)
    labels = torch.cat([s.gt_label for s in batch['data_samples']])
    expected_top1 = 100.0 * (predicted == labels).float().mean().item()

    cfg['experiment_name'] = 'test_py'
    test_tool = _load_tool('test')
    metrics = test_tool.run(test_tool.parse_args(
        [write_cfg(cfg, tmp_path / 'test_cfg.py'), str(checkpoint),
         '--work-dir', str(tmp_path / 'test_work')]))
    assert metrics['accuracy/top1'] == pytest.approx(expected_top1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_cpu_training_through_dist_train_sh(data_root, tmp_path):
    cfg = tiny_cfg(data_root, 'dist', max_iters=2, checkpoint_interval=2)
    work_dir = tmp_path / 'work'
    env = dict(os.environ, PORT=str(_free_port()), PYTHONPATH=str(ROOT))
    env.pop('OMP_NUM_THREADS', None)  # dist_launch.sh sets it, so torchrun and mmengine stay quiet
    result = subprocess.run(
        ['bash', str(ROOT / 'tools' / 'dist_train.sh'), write_cfg(cfg, tmp_path / 'cfg.py'), '2',
         '--work-dir', str(work_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Warning' not in result.stderr, result.stderr
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']
    log = read_log(work_dir)
    # mmengine's environment summary; "GPU number" is its name for the world size.
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    # Every registry the Runner builds from under the scope 'mmclip' exists (the optimizer,
    # the schedulers, the sampler, the DDP wrapper, ...): mmengine would warn per build.
    assert 'Failed to search registry' not in log + result.stdout + result.stderr
    model = build_model(cfg)
    load_checkpoint(model, str(work_dir / 'iter_2.pth'), strict=True)


# ---- the example configs, shrunk to the tiny arch and the photo folder ----------------------
def shrink_example(name: str, data_root: Path, pretrained: Path, work_dir: Path) -> Config:
    """``configs/clip/<name>`` with the tiny arch at 32 px on the photo folder, 2 epochs,
    and ``pretrained`` (a tiny checkpoint) in place of the zoo URL; the recipe (optimizer,
    layer decay, schedule, augments, loss, hooks) is the config's own."""
    cfg = Config.fromfile(ROOT / 'configs' / 'clip' / name)
    cfg.model.backbone.update(arch=TINY_ARCH, img_size=32, patch_size=16)
    cfg.model.head.in_channels = 32
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        pipeline = [dict(t, **{k: 32 for k in ('scale', 'crop_size') if k in t})
                    for t in loader.dataset.pipeline]
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset = dict(type='CustomDataset', data_root=str(data_root),
                              data_prefix='train', pipeline=pipeline)
    for hook in cfg.custom_hooks:
        if hook['type'] == 'LoadPretrainedHook':
            hook['checkpoint'] = str(pretrained)
    cfg.train_cfg.max_epochs = 2
    cfg.default_hooks.logger.interval = 1
    cfg.update(work_dir=str(work_dir), experiment_name=f'{work_dir.name}_{name}')
    return cfg


def tiny_pretrained(path: Path, num_classes: int = 1000, seed: int = 7) -> dict:
    cfg = dict(model=dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', arch=TINY_ARCH, img_size=32, patch_size=16,
                      pre_norm=True),
        head=dict(type='VisionTransformerClsHead', num_classes=num_classes, in_channels=32)),
        data_preprocessor=dict())
    state = build_model(cfg, seed=seed).state_dict()
    torch.save({'state_dict': state}, path)
    return state


def test_custom_linear_probe_config_trains_only_the_new_head(data_root, tmp_path):
    pretrained = tiny_pretrained(tmp_path / 'in1k.pth')
    cfg = shrink_example('vit-base-p32_clip_linear-probe_custom.py', data_root,
                         tmp_path / 'in1k.pth', tmp_path / 'work')
    run_train([write_cfg(cfg.to_dict(), tmp_path / 'probe.py')])

    log = read_log(tmp_path / 'work')
    assert 'head.layers.head.weight: checkpoint (1000, 32) vs model (10, 32)' in log
    checkpoint = read_training_checkpoint(tmp_path / 'work' / 'epoch_2.pth')
    state = checkpoint['state_dict']
    backbone = {k: v for k, v in pretrained.items() if k.startswith('backbone.')}
    _assert_same_state(backbone, {k: state[k] for k in backbone}, 'frozen backbone')
    assert len(checkpoint['optimizer']['state']) == 2, 'only the head weight and bias train'
    assert 'accuracy/top1' in log


def test_imagenet_finetune_config_with_mixup_and_ema_resumes(data_root, tmp_path):
    pretrained = tiny_pretrained(tmp_path / 'in1k.pth')
    cfg = shrink_example('vit-base-p16_clip-openai-pre_ft-8xb128_in1k.py', data_root,
                         tmp_path / 'in1k.pth', tmp_path / 'work')
    assert cfg.data_preprocessor.batch_augments.type == 'RandomBatchAugment'
    assert any(h['type'] == 'EMAHook' for h in cfg.custom_hooks)
    # The photo folder with ImageNet's 1000 classes (labels 0-9 used), so that the
    # 1000-class head fits the dataset as it fits the checkpoint.
    from mmclip.datasets import imagenet_categories
    ann_file = tmp_path / 'train.txt'
    ann_file.write_text(''.join(f'{f.parent.name}/{f.name} {f.parent.name.split("_")[1]}\n'
                                for f in sorted((data_root / 'train').glob('*/*'))))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.update(ann_file=str(ann_file), classes=list(imagenet_categories()))
    # No warm-up and a large LR, so that the raw weights move far from the EMA ones.
    cfg.param_scheduler[0].start_factor = 1.0
    cfg.optim_wrapper.optimizer.lr = 1e-2
    path = write_cfg(cfg.to_dict(), tmp_path / 'ft.py')
    run_train([path, '--resume'])

    log = read_log(tmp_path / 'work')
    assert 'Dropped the head' not in log, 'a 1000-class head fits and is kept'
    checkpoint = read_training_checkpoint(tmp_path / 'work' / 'epoch_2.pth')
    assert 'ema_state_dict' in checkpoint
    # state_dict holds the EMA weights (what tools/test.py evaluates), ema_state_dict the
    # raw ones. EMA's first update copies the weights after step 1 (pretrained + one
    # AdamW step, at most lr per element); with momentum 1e-4 the next five updates
    # barely move it, while the raw head takes five more steps.
    key, lr = 'head.layers.head.weight', 1e-2
    ema_head = checkpoint['state_dict'][key]
    raw_head = checkpoint['ema_state_dict'][f'module.{key}']
    assert (ema_head - pretrained[key]).abs().max() <= 1.05 * lr
    assert (raw_head - pretrained[key]).abs().max() > 3 * lr

    cfg.train_cfg.max_epochs = 3
    cfg.experiment_name += '_resumed'
    run_train([write_cfg(cfg.to_dict(), tmp_path / 'ft_more.py'), '--resume'])
    last_log = sorted((tmp_path / 'work').rglob('*.log'))[-1].read_text()
    assert 'resumed' in last_log.lower() and 'LoadPretrainedHook: skipped' in last_log
    assert read_training_checkpoint(tmp_path / 'work' / 'epoch_3.pth')['meta']['epoch'] == 3


def test_command_line_options_edit_a_copy_of_the_config(data_root, tmp_path):
    cfg = Config(tiny_cfg(data_root, 'options'))
    original = cfg.to_dict()

    auto = train_tool.merge_args(cfg, train_tool.parse_args(['cfg.py', '--resume']))
    assert (auto.resume, auto.load_from) == (True, None)
    assert auto.work_dir == osp.join('./work_dirs', 'cfg')
    ckpt = tmp_path / 'iter_4.pth'
    ckpt.write_bytes(b'')
    given = train_tool.merge_args(cfg, train_tool.parse_args(
        ['cfg.py', '--resume', str(ckpt), '--work-dir', 'w', '--cfg-options',
         'train_cfg.max_iters=3']))
    assert (given.resume, given.load_from, given.work_dir) == (True, str(ckpt), 'w')
    assert given.train_cfg.max_iters == 3

    scalable = Config(dict(original, auto_scale_lr=dict(base_batch_size=8)))
    assert train_tool.merge_args(scalable, train_tool.parse_args(
        ['cfg.py', '--auto-scale-lr'])).auto_scale_lr.enable is True
    if not torch.cuda.is_available():
        dist = train_tool.merge_args(cfg, train_tool.parse_args(
            ['cfg.py', '--launcher', 'pytorch']))
        assert dist.env_cfg.dist_cfg.backend == 'gloo'
        assert dist.model_wrapper_cfg.device_ids is None
        amp = train_tool.merge_args(cfg, train_tool.parse_args(['cfg.py', '--amp']))
        assert amp.optim_wrapper.type == 'BF16AutocastOptimWrapper'
        with pytest.raises(ValueError, match='--precision fp16: .*needs a CUDA device'):
            train_tool.parse_args(['cfg.py', '--precision', 'fp16'])
    assert cfg.to_dict() == original, 'the caller\'s config must not change'

    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        train_tool.merge_args(cfg, train_tool.parse_args(['cfg.py', '--resume', 'nope.pth']))
    with pytest.raises(ValueError, match='base_batch_size'):
        train_tool.merge_args(cfg, train_tool.parse_args(['cfg.py', '--auto-scale-lr']))


def test_unreadable_image_ends_training_with_one_clear_line(data_root, tmp_path, capfd):
    broken = tmp_path / 'data'
    shutil.copytree(data_root, broken)
    victim = next((broken / 'train' / 'class_0').glob('*.jpg'))
    victim.write_bytes(victim.read_bytes()[:200])  # a cut-off JPEG
    cfg = tiny_cfg(broken, 'broken')
    cfg['train_dataloader']['sampler'] = dict(type='DefaultSampler', shuffle=False)
    code = train_tool.main([write_cfg(cfg, tmp_path / 'cfg.py'), '--work-dir',
                            str(tmp_path / 'work')])
    assert code == 1
    out, err = capfd.readouterr()
    (line, ) = [x for x in (out + err).splitlines() if f"Cannot read image '{victim}'" in x]
    assert line.startswith('ERROR: ')  # plain, as before the Runner started (issue 22)
    assert 'Traceback' not in out + err
    (log, ) = (tmp_path / 'work').glob('*/*.log')  # the log file keeps it, time-stamped
    assert re.search(r' - mmengine - ERROR - Cannot read image ', log.read_text())


def test_load_pretrained_is_strict_outside_the_head(data_root, tmp_path):
    from mmclip.checkpoint import StateDictMismatchError
    from mmclip.engine import load_pretrained
    cfg = tiny_cfg(data_root, 'strict')
    deeper = dict(cfg['model'], backbone=dict(cfg['model']['backbone'],
                                              arch=dict(TINY_ARCH, num_layers=3)))
    torch.save(build_model(dict(cfg, model=deeper)).state_dict(), tmp_path / 'deeper.pth')
    with pytest.raises(StateDictMismatchError, match=r'backbone\.layers\.2\.'):
        load_pretrained(build_model(cfg), str(tmp_path / 'deeper.pth'))

    tiny_pretrained(tmp_path / 'in1k.pth')
    with pytest.raises(StateDictMismatchError, match=r'head\.layers\.head\.weight'):
        load_pretrained(build_model(cfg), str(tmp_path / 'in1k.pth'), drop_mismatched_head=False)
    model = build_model(cfg)
    dropped = load_pretrained(model, str(tmp_path / 'in1k.pth'))
    assert dropped == ['head.layers.head.bias: checkpoint (1000,) vs model (10,)',
                       'head.layers.head.weight: checkpoint (1000, 32) vs model (10, 32)']


# ---- precision and command-line overrides -----------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp means bf16 on the CPU only')
def test_amp_is_bf16_autocast_in_train_and_test_on_cpu(data_root, tmp_path):
    cfg = tiny_cfg(data_root, 'amp', max_iters=2, checkpoint_interval=2)
    path = write_cfg(cfg, tmp_path / 'cfg.py')
    run_train([path, '--amp', '--work-dir', str(tmp_path / 'train')])
    assert 'device cpu, precision bf16' in read_log(tmp_path / 'train')
    test_tool = _load_tool('test')
    # Its own experiment name: one name is one logger (and log file) in this process.
    assert test_tool.main([path, str(tmp_path / 'train' / 'iter_2.pth'), '--amp',
                           '--work-dir', str(tmp_path / 'test'),
                           '--cfg-options', 'experiment_name=amp_test']) == 0
    assert 'device cpu, precision bf16' in read_log(tmp_path / 'test')

    # The training forward pass really runs in bf16 (and fp32 without --amp).
    from mmengine.optim import OptimWrapper

    from mmclip.engine import BF16AutocastOptimWrapper
    batch = fixed_batch(data_root, size=4)
    for wrapper_type, dtype in ((OptimWrapper, torch.float32),
                                (BF16AutocastOptimWrapper, torch.bfloat16)):
        model = build_model(cfg).train()
        seen = []
        model.head.layers.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        wrapper = wrapper_type(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
        loss = model.train_step(batch, wrapper)['loss']
        assert seen == [dtype] and torch.isfinite(loss)


@pytest.fixture(scope='module')
def two_class_folder(tmp_path_factory, images_dir) -> Path:
    """``{train,val}/{cat,dog}/<photo>``: two classes."""
    root = tmp_path_factory.mktemp('two_classes')
    photos = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in ('.png', '.jpg'))
    for split in ('train', 'val'):
        for i, photo in enumerate(photos[:8]):
            folder = root / split / ('cat', 'dog')[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(photo) as img:
                img.thumbnail((48, 48))
                img.save(folder / photo.name)
    return root


def tiny_custom_finetune_config(path: Path) -> str:
    """configs/clip/vit-base-p32_clip_ft_custom.py with the tiny arch at 32 px; its data
    root and pretrained URL are left as the file says."""
    pipeline = repr(PIPELINE)
    loader = f'dict(batch_size=4, num_workers=0, persistent_workers=False, ' \
             f'dataset=dict(pipeline={pipeline}))'
    path.write_text(
        f"_base_ = {str(ROOT / 'configs/clip/vit-base-p32_clip_ft_custom.py')!r}\n"
        f"model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r}), img_size=32,\n"
        f"                           patch_size=16), head=dict(in_channels=32))\n"
        f"train_dataloader = {loader}\nval_dataloader = {loader}\ntest_dataloader = {loader}\n"
        f"train_cfg = dict(max_epochs=1)\n")
    return str(path)


def test_finetune_from_local_files_set_on_the_command_line(two_class_folder, tmp_path):
    tiny_pretrained(tmp_path / 'in1k.pth')
    config = tiny_custom_finetune_config(tmp_path / 'ft_tiny.py')
    work = tmp_path / 'work'
    common = [config, '--data-root', str(two_class_folder), '--pretrained',
              str(tmp_path / 'in1k.pth'), '--work-dir', str(work)]

    # The config's 10-class head does not fit 2 folders: refused before training starts.
    with pytest.raises(ValueError, match=r'num_classes=10 but the training set has 2 classes; '
                       r'set --cfg-options model\.head\.num_classes=2'):
        train_tool.train(train_tool.parse_args(common))
    assert not list(work.glob('*.pth')) and 'Epoch(train)' not in read_log(work)

    run_train(common + ['--cfg-options', 'model.head.num_classes=2',
                        'data_preprocessor.num_classes=2'])
    log = read_log(work)
    assert f'Dropped the head of pre-trained checkpoint {tmp_path / "in1k.pth"}' in log
    assert 'Epoch(train) [1]' in log and (work / 'epoch_1.pth').is_file()
    dumped = Config.fromfile(work / 'ft_tiny.py')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert dumped[key].dataset.data_root == str(two_class_folder)
    hook = next(h for h in dumped.custom_hooks if h['type'] == 'LoadPretrainedHook')
    assert hook['checkpoint'] == str(tmp_path / 'in1k.pth')
    text = (work / 'ft_tiny.py').read_text()
    assert 'https://' not in text and 'data/custom' not in text


# ---- the seed configs train (issue 18) ------------------------------------------------------
@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory, images_dir) -> Path:
    """An ImageNet-layout root with annotation files: two photos per split."""
    root = tmp_path_factory.mktemp('imagenet')
    photos = sorted(images_dir.glob('*.png'))[:2]
    (root / 'meta').mkdir()
    for split in ('train', 'val'):
        (root / split).mkdir()
        for photo in photos:
            with Image.open(photo) as img:
                img.convert('RGB').resize((64, 48)).save(root / split / photo.name)
        (root / 'meta' / f'{split}.txt').write_text(
            ''.join(f'{p.name} {i * 7}\n' for i, p in enumerate(photos)))
    return root


SEED_CONFIGS = sorted((ROOT / 'configs' / 'clip').glob('vit-base-p*_pt-64xb64_in1k*.py'))
ONE_ITERATION = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
                 'val_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                 'val_dataloader.num_workers=0', '+default_hooks.checkpoint=None']


@pytest.mark.parametrize('seed', SEED_CONFIGS, ids=lambda p: p.stem)
def test_seed_config_trains_an_iteration(seed, imagenet_root, tmp_path, capsys):
    """The seed's data, schedule and runtime at its own resolution; the model is made
    tiny by a config inheriting the seed, as users write theirs."""
    config = tmp_path / f'tiny_{seed.stem}.py'  # its own experiment (logger) name
    config.write_text(f'_base_ = [{str(seed)!r}]\n'
                      f'model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r})), '
                      f'head=dict(in_channels={TINY_ARCH["embed_dims"]}))\n')
    run_train([str(config), '--data-root', str(imagenet_root), '--work-dir',
               str(tmp_path / 'work'), '--cfg-options', *ONE_ITERATION])
    out = capsys.readouterr().out
    assert re.search(r'Epoch\(train\) \[1\]\[1/1\].*loss: \d', out), out[-2000:]
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\].*accuracy/top1', out), out[-2000:]


def test_finetune_config_written_the_mmpretrain_way_on_a_seed_config(data_root, tmp_path,
                                                                     capsys):
    """``_base_ = [seed]`` with ``_delete_=True`` overrides of its train parts."""
    config = tmp_path / 'my_finetune.py'
    config.write_text(
        f"_base_ = [{str(SEED_CONFIGS[0])!r}]\n"
        f"model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r}), img_size=32),\n"
        f"             head=dict(in_channels={TINY_ARCH['embed_dims']}, "
        f"num_classes={NUM_CLASSES}))\n"
        f"data_preprocessor = dict(num_classes={NUM_CLASSES})\n"
        f"train_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(\n"
        f"    _delete_=True, type='CustomDataset', data_root={str(data_root)!r},\n"
        f"    data_prefix='train', pipeline={PIPELINE!r}))\n"
        f"val_dataloader = None\nval_cfg = None\nval_evaluator = None\n"
        f"optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW', lr=1e-3))\n"
        f"param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, "
        f"begin=0, end=2)]\n"
        f"train_cfg = dict(_delete_=True, by_epoch=False, max_iters=2)\n"
        f"default_hooks = dict(checkpoint=None, logger=dict(interval=1))\n")
    run_train([str(config), '--work-dir', str(tmp_path / 'work')])
    out = capsys.readouterr().out  # 2 iterations, logged as batches of the first epoch
    assert re.search(r'\(train\) \[1\]\[2/\d+\].*loss: \d', out), out[-2000:]
    assert not re.search(r'\[3/\d+\]', out)


def test_an_evaluation_config_given_to_train_is_one_line(tmp_path, capsys):
    config = ROOT / 'configs/clip/vit-base-p32_clip-openai-pre_3rdparty_in1k.py'
    assert train_tool.main([str(config), '--work-dir', str(tmp_path / 'work')]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and 'has no training setup' in errors[0], errors
    assert 'train_dataloader' in errors[0]
