# vit-base-p16_clip-laion2b-in12k-pre_3rdparty_in1k-384px
# CLIP ViT-B/16 image tower, LAION-2B CLIP pre-training, fine-tuned on ImageNet-12k, then
# ImageNet-1k; weights converted from timm's
# vit_base_patch16_clip_384.laion2b_ft_in12k_in1k. Evaluated as timm's pretrained config
# says: 384 px input, crop_pct 1.0, crop_mode 'squash': bicubic (pillow) resize of both
# edges to floor(384 / 1.0) = 384, aspect ratio not kept, then a 384 px center crop; CLIP
# mean / std (from the base).
_base_ = ['../_base_/models/clip_vit.py', '../_base_/imagenet_eval.py']

model = dict(backbone=dict(arch='b', patch_size=16, img_size=384),
             head=dict(in_channels=768))

test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=384, crop_pct=1.0, crop_mode='squash',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]))
