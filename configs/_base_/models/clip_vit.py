# A CLIP image tower + linear head, as the published ImageNet-1k fine-tunes (their data
# preprocessor, with CLIP's mean / std, is in imagenet_eval.py). A model config sets the
# geometry: backbone arch ('b', 'l', 'h'), patch_size and img_size (the checkpoint's
# resolution), and the head's in_channels (the arch's width).
# CLIP towers: pre-norm (LayerNorm after the position embedding), so the patch conv has
# no bias; LayerNorm eps 1e-5; GELU (erf); class-token pooling; Linear(width, 1000).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        pre_norm=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        drop_rate=0.0,
        drop_path_rate=0.0,
        out_type='cls_token',
        final_norm=True),
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
