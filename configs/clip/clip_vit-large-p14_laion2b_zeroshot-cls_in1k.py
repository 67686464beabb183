# clip_vit-large-p14_laion2b_zeroshot-cls_in1k
# open_clip ViT-L-14 laion2b_s32b_b82k: zero-shot ImageNet-1k with OpenAI's 80 prompt templates
# and 1000 class names. Preprocessing as open_clip's for these weights: bicubic (pillow) resize
# of the short edge to 224, 224 px center crop, mean / std 0.5 (not OpenAI's).
_base_ = ['../_base_/models/clip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(arch='l', patch_size=14),
    text_backbone=dict(arch='l', out_channels=768),
    head=dict(in_channels=1024, out_channels=768),
)

# These weights were trained with mean = std = 0.5 (open_clip: INCEPTION_MEAN / STD).
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
