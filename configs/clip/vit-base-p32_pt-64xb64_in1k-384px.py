_base_ = './vit-base-p32_pt-64xb64_in1k.py'

# CLIP ViT-B/32 at 384 px. img_size=384 lays the position embedding out for 384 px
# input, so 384 px checkpoints load as they are, without resampling.
model = dict(backbone=dict(img_size=384, patch_size=32))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# Short edge bicubic (pillow) to 384, center crop 384; CLIP mean / std as in _base_.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=384, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
