# Evaluation on ImageNet-1k val: everything tools/test.py needs besides the model (no
# training schedule). Images leave the pipeline as uint8 BGR; the model's data
# preprocessor normalises them (below).
# Types resolve in the mmclip registries (children of mmengine's).
default_scope = 'mmclip'

# OpenAI CLIP mean / std (not ImageNet's) times 255, RGB; images arrive as uint8 BGR and
# are normalised on the device.
data_preprocessor = dict(
    num_classes=1000,
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    to_rgb=True,
)

# Seed evaluation at 224 px: short edge bicubic-resized to the crop size, then a center
# crop. A zoo model's config replaces it with its weights' own crop_pct / crop_mode.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=5,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(type='Accuracy', topk=(1, 5))
test_cfg = dict()

# Hooks not named here are mmengine's defaults.
default_hooks = dict(logger=dict(type='LoggerHook', interval=100))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # timeout: seconds a collective waits for a rank that stopped answering (the tools'
    # default, here so that --cfg-options env_cfg.dist_cfg.timeout=N names a key).
    dist_cfg=dict(backend='nccl', timeout=1800),
)
visualizer = dict(type='ScalarVisualizer', vis_backends=[dict(type='LocalVisBackend')])
log_level = 'INFO'
