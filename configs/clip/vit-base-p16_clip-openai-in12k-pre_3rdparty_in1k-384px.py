# vit-base-p16_clip-openai-in12k-pre_3rdparty_in1k-384px
# CLIP ViT-B/16 image tower, OpenAI CLIP pre-training, fine-tuned on ImageNet-12k, then
# ImageNet-1k; weights converted from timm's vit_base_patch16_clip_384.openai_ft_in12k_in1k.
# Evaluated as the weights' authors do (timm's pretrained config): 384 px input, crop_pct
# 0.95, crop_mode 'squash': bicubic (pillow) resize of both edges to floor(384 / 0.95) = 404,
# aspect ratio not kept, then a 384 px center crop; OpenAI CLIP mean / std.
_base_ = './vit-base-p16_pt-64xb64_in1k-384px.py'

# OpenAI CLIP mean / std (not ImageNet's) times 255, RGB; images arrive as uint8 BGR.
data_preprocessor = dict(
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    to_rgb=True,
)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=384, crop_pct=0.95, crop_mode='squash',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
