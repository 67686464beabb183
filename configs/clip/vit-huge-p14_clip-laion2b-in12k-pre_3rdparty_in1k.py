# vit-huge-p14_clip-laion2b-in12k-pre_3rdparty_in1k
# CLIP ViT-H/14 image tower, LAION-2B CLIP pre-training, fine-tuned on ImageNet-12k, then
# ImageNet-1k; weights converted from timm's
# vit_huge_patch14_clip_224.laion2b_ft_in12k_in1k. Evaluated as timm's pretrained config
# says: 224 px input, crop_pct 1.0, crop_mode 'center': bicubic (pillow) resize of the short
# edge to floor(224 / 1.0) = 224, aspect ratio kept, then a 224 px center crop; CLIP mean /
# std (from the base).
_base_ = ['../_base_/models/clip_vit.py', '../_base_/imagenet_eval.py']

model = dict(backbone=dict(arch='h', patch_size=14, img_size=224),
             head=dict(in_channels=1280))

test_dataloader = dict(batch_size=16, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=224, crop_pct=1.0, crop_mode='center',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]))
