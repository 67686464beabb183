# siglip_vit-large-p16_webli_zeroshot-cls_in1k-256px
# open_clip ViT-L-16-SigLIP-256 webli (Google SigLIP): zero-shot ImageNet-1k with OpenAI's
# 80 prompt templates and 1000 class names, sigmoid scores. Preprocessing as open_clip's
# for these weights: bicubic (pillow) resize of both edges to 256 px ("squash", no
# crop), mean / std 0.5. Tokenizer: open_clip's hf_tokenizer_name for the model.
_base_ = ['../_base_/models/siglip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(arch='l', img_size=256),
    text_backbone=dict(arch='h', out_channels=1024),
    head=dict(in_channels=1024, out_channels=1024),
)

# These weights were trained with mean = std = 0.5 (open_clip: INCEPTION_MEAN / STD).
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=256, crop_pct=1.0, crop_mode='squash',
         backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
