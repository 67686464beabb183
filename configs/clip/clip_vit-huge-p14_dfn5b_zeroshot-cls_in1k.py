# clip_vit-huge-p14_dfn5b_zeroshot-cls_in1k
# open_clip ViT-H-14-quickgelu dfn5b (Apple's DFN-5B ViT-H/14): zero-shot ImageNet-1k with
# OpenAI's 80 prompt templates and 1000 class names. Preprocessing as open_clip's for these
# weights: bicubic (pillow) resize of both edges to 224 px ("squash", no crop), OpenAI mean /
# std.
# The weights were trained with QuickGELU (open_clip's pretrained config sets quick_gelu); erf
# GELU would shift their embeddings.
_base_ = ['../_base_/models/clip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(arch='h', patch_size=14, act_cfg=dict(type='QuickGELU')),
    text_backbone=dict(arch='h', out_channels=1024, act_cfg=dict(type='QuickGELU')),
    head=dict(in_channels=1280, out_channels=1024),
)

# open_clip's preprocessing for these weights is 'squash': both edges resized (bicubic,
# pillow) to 224, so the whole image is kept and nothing is left to crop.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=224, crop_pct=1.0, crop_mode='squash',
         backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
