# Robust fine-tuning, step 1: end-to-end fine-tuning on ImageNet-1k from the zero-shot head
# (WiSE-FT's fine-tuned end point). The config that uses this file adds the tower (image
# tower geometry) and the ZeroShotInitHook that loads both CLIP towers and turns the
# zero-shot head into this model's CLIPLinearClsHead. Interpolate the result with the
# zero-shot classifier through tools/wise_ft.py (docs/robust_finetune.md).
#
# Hyper-parameters of Wortsman et al., "Robust fine-tuning of zero-shot models"
# (arXiv:2109.01903), as github.com/mlfoundations/wise-ft runs them: README ("Run WiSE-FT":
# --epochs=10 --lr=0.00003 --batch-size=512), src/args.py (--wd 0.1, --warmup_length 500,
# --ls 0), src/models/finetune.py (AdamW on every weight, gradient norm clipped at 1.0,
# cosine schedule after a linear warm-up, cross-entropy) and clip/clip.py (training crop
# RandomResizedCrop(224, scale=(0.9, 1.0)) bicubic, no flip).
# One difference: mmengine's cosine here spans all iterations and overlaps the 500 warm-up
# iterations (WiSE-FT starts it after them): on ImageNet (25,030 steps) the LR differs from
# WiSE-FT's by at most 1.9 % of the base LR.
_base_ = ['../datasets/imagenet_bs64_224.py']

# CLIP image tower (pre-norm ViT, LayerNorm eps 1e-5, class token after ln1) -> projection
# -> L2 norm -> Linear; the tower config adds arch, patch size and activation.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VisionTransformer', img_size=224, pre_norm=True,
                  norm_cfg=dict(type='LN', eps=1e-5), out_type='cls_token', final_norm=True),
    head=dict(type='CLIPLinearClsHead', num_classes=1000,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.9, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='PackInputs'),
]
# 8 GPUs x 64 = WiSE-FT's batch of 512.
train_dataloader = dict(batch_size=64, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, num_workers=8)
test_dataloader = dict(batch_size=64, num_workers=8)

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=3e-5, weight_decay=0.1),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    # WiSE-FT's warm-up: lr * (step + 1) / 500.
    dict(type='LinearLR', start_factor=1 / 500, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
auto_scale_lr = dict(base_batch_size=512)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2, save_best='auto'))
randomness = dict(seed=0, diff_rank_seed=True)
