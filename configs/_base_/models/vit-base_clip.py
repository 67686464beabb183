# CLIP ViT-B image tower + linear head, as the published ImageNet-1k fine-tunes:
# pre-norm (LayerNorm after the position embedding), so the patch conv has no bias;
# LayerNorm eps 1e-5; GELU (erf); class-token pooling; Linear(768, 1000).
# Leaf configs set patch_size (16 or 32) and img_size (the checkpoint's resolution).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        pre_norm=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        drop_rate=0.0,
        drop_path_rate=0.0,
        out_type='cls_token',
        final_norm=True),
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
