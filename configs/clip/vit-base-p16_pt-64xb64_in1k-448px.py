_base_ = './vit-base-p16_pt-64xb64_in1k.py'

# CLIP ViT-B/16 at 448 px. img_size=448 lays the position embedding out for 448 px
# input, so 448 px checkpoints load as they are, without resampling.
model = dict(backbone=dict(img_size=448, patch_size=16))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=448, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# Short edge bicubic (pillow) to 448, center crop 448; CLIP mean / std as in _base_.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=448, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
