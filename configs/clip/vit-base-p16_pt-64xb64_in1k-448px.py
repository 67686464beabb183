# CLIP ViT-B/16 at 448 px: mmpretrain's seed config, complete (model, data, schedule,
# runtime): it trains as mmpretrain's does (random resized crop + flip at 448 px, AdamW
# schedule of 300 epochs for 64 GPUs x 64 images) and tests as its checkpoints were first
# published (short edge bicubic (pillow) to 448, center crop 448; CLIP mean / std).
# The zoo models' own configs (configs/clip/<model name>.py) use each checkpoint's
# crop_pct / crop_mode instead.
_base_ = ['../_base_/models/clip_vit.py', '../_base_/datasets/imagenet_bs64_224.py',
          '../_base_/schedules/imagenet_bs4096_adamw.py']

# img_size=448 lays the position embedding out for 448 px input, so 448 px checkpoints
# load as they are, without resampling.
model = dict(backbone=dict(arch='b', patch_size=16, img_size=448),
             head=dict(in_channels=768))

# mmpretrain's seed pipelines at 448 px; validation is the test set.
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=448, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=448, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]))
val_dataloader = test_dataloader
