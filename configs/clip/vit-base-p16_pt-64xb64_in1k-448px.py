_base_ = [
    '../_base_/models/vit-base-p16_clip.py',
    '../_base_/datasets/imagenet_bs64_clip_224.py',
    '../_base_/schedules/imagenet_bs4096_adamw.py',
    '../_base_/default_runtime.py',
]

# CLIP ViT-B/16 at 448 px: pre-norm (no patch bias), LayerNorm eps 1e-5, GELU, 1000 classes.
# img_size=448 lays the position embedding out for a 448 px input, so the 448 px
# checkpoints load as they are.
model = dict(
    backbone=dict(img_size=448, patch_size=16, pre_norm=True, norm_cfg=dict(type='LN', eps=1e-5)),
    head=dict(num_classes=1000, in_channels=768),
)

# OpenAI CLIP mean / std times 255, RGB; images arrive as uint8 BGR.
data_preprocessor = dict(
    num_classes=1000,
    mean=[122.770938, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305],
    to_rgb=True,
)

# As first published with these weights: short edge bicubic (pillow) to 448, center crop.
# The per-model configs (configs/clip/<model name>.py) use each checkpoint's own
# crop_pct / crop_mode instead.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=448, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
