# Full fine-tune of the zoo model vit-base-p32_clip-openai-pre_3rdparty_in1k on your own
# image folders, with a new head of N classes (here 10). Data layout:
#   data/custom/train/<class name>/<image>   and   data/custom/val/<class name>/<image>
# Run:  python tools/train.py configs/clip/vit-base-p32_clip_ft_custom.py --resume
# The checkpoint's 1000-class head does not fit the 10-class head: LoadPretrainedHook
# drops it with a logged line and loads everything else strictly.
# Pipelines (train: random resized crop + flip; test: short edge to 224 + center crop):
# datasets/imagenet_bs64_224.py; optimizer family: schedules/imagenet_bs1024_adamw_ft.py.
_base_ = [
    '../_base_/models/clip_vit.py',
    '../_base_/datasets/imagenet_bs64_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_ft.py',
]

num_classes = 10

# CLIP ViT-B/32 at 224 px, with stochastic depth and label smoothing for training.
model = dict(
    backbone=dict(arch='b', patch_size=32, img_size=224, drop_path_rate=0.1),
    head=dict(num_classes=num_classes, in_channels=768,
              loss=dict(type='CrossEntropyLoss', label_smooth_val=0.1)),
)
data_preprocessor = dict(num_classes=num_classes)

# Class folders instead of ImageNet (_delete_ drops ImageNet's `split`); the root is
# stated once, in the train set, and val reads it from there.
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/custom',
                 data_prefix='train', pipeline=_base_.train_pipeline),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(_delete_=True, type='CustomDataset',
                 data_root=train_dataloader['dataset']['data_root'], data_prefix='val',
                 pipeline=_base_.test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# One GPU x 32 images; layer-wise LR decay 0.65 over the 12 blocks.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-3, by_epoch=True, begin=2, end=20,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=1)
auto_scale_lr = dict(base_batch_size=32)

custom_hooks = [
    dict(type='LoadPretrainedHook',
         checkpoint='https://download.openmmlab.com/mmclassification/v0/clip/'
         'clip-vit-base-p32_openai-pre_3rdparty_in1k_20221220-a0182ba9.pth'),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2, save_best='auto'),
)
randomness = dict(seed=0)
