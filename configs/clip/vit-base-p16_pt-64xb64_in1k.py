_base_ = [
    '../_base_/models/vit-base_clip.py',
    '../_base_/datasets/imagenet_bs64_224.py',
    '../_base_/schedules/imagenet_bs4096_adamw.py',
    '../_base_/default_runtime.py',
]

# CLIP ViT-B/16 at 224 px: pre-norm (no patch bias), LayerNorm eps 1e-5, GELU, 1000 classes.
model = dict(
    backbone=dict(img_size=224, patch_size=16, pre_norm=True, norm_cfg=dict(type='LN', eps=1e-5)),
    head=dict(num_classes=1000, in_channels=768),
)

# OpenAI CLIP mean / std times 255, RGB (not ImageNet's); images arrive as uint8 BGR.
data_preprocessor = dict(
    num_classes=1000,
    mean=[122.770938, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305],
    to_rgb=True,
)

# As first published with these weights: short edge bicubic (pillow) to the crop size,
# then a center crop. The per-model configs (configs/clip/<model name>.py) use each
# checkpoint's own crop_pct / crop_mode instead.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
