# vit-large-p14_clip-openai-in12k-pre_3rdparty_in1k-336px
# CLIP ViT-L/14 image tower, OpenAI CLIP pre-training, fine-tuned on ImageNet-12k, then
# ImageNet-1k; weights converted from timm's
# vit_large_patch14_clip_336.openai_ft_in12k_in1k. Evaluated as timm's pretrained config
# says: 336 px input, crop_pct 1.0, crop_mode 'squash': bicubic (pillow) resize of both
# edges to floor(336 / 1.0) = 336, aspect ratio not kept, then a 336 px center crop; CLIP
# mean / std (from the base).
_base_ = ['../_base_/models/clip_vit.py', '../_base_/imagenet_eval.py']

model = dict(backbone=dict(arch='l', patch_size=14, img_size=336),
             head=dict(in_channels=1024))

test_dataloader = dict(batch_size=32, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=336, crop_pct=1.0, crop_mode='squash',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=336),
    dict(type='PackInputs'),
]))
