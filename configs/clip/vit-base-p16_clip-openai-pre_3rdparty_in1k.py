# vit-base-p16_clip-openai-pre_3rdparty_in1k
# CLIP ViT-B/16 image tower, OpenAI CLIP pre-training, fine-tuned on ImageNet-1k; weights
# converted from timm's vit_base_patch16_clip_224.openai_ft_in1k. Evaluated as timm's
# pretrained config says: 224 px input, crop_pct 0.9, crop_mode 'center': bicubic (pillow)
# resize of the short edge to floor(224 / 0.9) = 248, aspect ratio kept, then a 224 px
# center crop; CLIP mean / std (from the base).
_base_ = ['../_base_/models/clip_vit.py', '../_base_/imagenet_eval.py']

model = dict(backbone=dict(arch='b', patch_size=16, img_size=224),
             head=dict(in_channels=768))

test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=224, crop_pct=0.9, crop_mode='center',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]))
