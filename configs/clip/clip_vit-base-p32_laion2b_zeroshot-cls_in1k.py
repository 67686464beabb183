# clip_vit-base-p32_laion2b_zeroshot-cls_in1k
# open_clip ViT-B-32 laion2b_s34b_b79k: zero-shot ImageNet-1k with OpenAI's 80 prompt templates
# and 1000 class names. Preprocessing as open_clip's for these weights: bicubic (pillow) resize
# of the short edge to 224, 224 px center crop, OpenAI mean / std.
_base_ = ['../_base_/models/clip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(patch_size=32),
)
