# clip_vit-huge-p14_metaclip-fullcc_zeroshot-cls_in1k
# open_clip ViT-H-14-quickgelu metaclip_fullcc (Meta's MetaCLIP 2.5B ViT-H/14): zero-shot
# ImageNet-1k with OpenAI's 80 prompt templates and 1000 class names. Preprocessing as
# open_clip's for these weights: bicubic (pillow) resize of the short edge to 224, 224 px
# center crop, OpenAI mean / std.
# The weights were trained with QuickGELU (open_clip's pretrained config sets quick_gelu); erf
# GELU would shift their embeddings.
_base_ = ['../_base_/models/clip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(arch='h', patch_size=14, act_cfg=dict(type='QuickGELU')),
    text_backbone=dict(arch='h', out_channels=1024, act_cfg=dict(type='QuickGELU')),
    head=dict(in_channels=1280, out_channels=1024),
)
