# clip_vit-base-p32_openai_zeroshot-cls_in1k
# OpenAI CLIP ViT-B/32: zero-shot ImageNet-1k with OpenAI's 80 prompt templates and 1000 class
# names. Preprocessing as open_clip's for these weights: bicubic (pillow) resize of the short
# edge to 224, 224 px center crop, OpenAI mean / std.
# OpenAI's towers were trained with QuickGELU; erf GELU would shift their embeddings.
_base_ = ['../_base_/models/clip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(patch_size=32, act_cfg=dict(type='QuickGELU')),
    text_backbone=dict(act_cfg=dict(type='QuickGELU')),
)
