# siglip2_vit-so400m-p14_webli_zeroshot-cls_in1k
# open_clip ViT-SO400M-14-SigLIP2 webli (Google SigLIP 2): zero-shot ImageNet-1k with OpenAI's
# 80 prompt templates and 1000 class names, sigmoid scores. Preprocessing as open_clip's
# for these weights: bicubic (pillow) resize of both edges to 224 px ("squash", no
# crop), mean / std 0.5. Tokenizer: open_clip's hf_tokenizer_name for the model.
# SigLIP 2's text tower: Gemma vocabulary (256k) and the tanh GELU (act_kwargs).
_base_ = ['../_base_/models/siglip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(arch='so400m', patch_size=14),
    text_backbone=dict(arch='so400m', out_channels=1152, vocab_size=256000,
                       act_cfg=dict(type='GELUTanh')),
    head=dict(in_channels=1152, out_channels=1152),
    tokenizer=dict(name='timm/ViT-SO400M-14-SigLIP2', context_length=64),
)

# These weights were trained with mean = std = 0.5 (open_clip: INCEPTION_MEAN / STD).
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=224, crop_pct=1.0, crop_mode='squash',
         backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
