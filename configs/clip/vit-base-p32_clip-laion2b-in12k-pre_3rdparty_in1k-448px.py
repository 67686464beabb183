# vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k-448px
# CLIP ViT-B/32 image tower, LAION-2B CLIP pre-training, fine-tuned on ImageNet-12k, then
# ImageNet-1k; weights converted from timm's vit_base_patch32_clip_448.laion2b_ft_in12k_in1k.
# Evaluated as the weights' authors do (timm's pretrained config): 448 px input, crop_pct 1.0,
# crop_mode 'center': bicubic (pillow) resize of the short edge to floor(448 / 1.0) = 448,
# aspect ratio kept, then a 448 px center crop; OpenAI CLIP mean / std.
_base_ = './vit-base-p32_pt-64xb64_in1k-448px.py'

# OpenAI CLIP mean / std (not ImageNet's) times 255, RGB; images arrive as uint8 BGR.
data_preprocessor = dict(
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    to_rgb=True,
)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropPctResize', crop_size=448, crop_pct=1.0, crop_mode='center',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
