# CLIP ViT-B/32 at 384 px: mmpretrain's seed config, complete (model, data, schedule,
# runtime): it trains as mmpretrain's does (random resized crop + flip at 384 px, AdamW
# schedule of 300 epochs for 64 GPUs x 64 images) and tests as its checkpoints were first
# published (short edge bicubic (pillow) to 384, center crop 384; CLIP mean / std).
# The zoo models' own configs (configs/clip/<model name>.py) use each checkpoint's
# crop_pct / crop_mode instead.
_base_ = ['../_base_/models/clip_vit.py', '../_base_/datasets/imagenet_bs64_224.py',
          '../_base_/schedules/imagenet_bs4096_adamw.py']

# img_size=384 lays the position embedding out for 384 px input, so 384 px checkpoints
# load as they are, without resampling.
model = dict(backbone=dict(arch='b', patch_size=32, img_size=384),
             head=dict(in_channels=768))

# mmpretrain's seed pipelines at 384 px; validation is the test set.
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=384, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]))
val_dataloader = test_dataloader
