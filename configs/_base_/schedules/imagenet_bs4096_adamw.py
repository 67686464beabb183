# Training ViT from scratch on ImageNet-1k as mmpretrain's CLIP seed configs state it
# (mmpretrain configs/_base_/schedules/imagenet_bs4096_AdamW.py): AdamW, LR 3e-3 for a
# total batch of 4096 (64 GPUs x 64), weight decay 0.3 except on cls_token / pos_embed,
# 30 warm-up epochs then cosine to epoch 300; gradients clipped at 1.0 (the seed configs'
# own line). --auto-scale-lr rescales the LR for another total batch.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=0.003, weight_decay=0.3),
    paramwise_cfg=dict(custom_keys={
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
    }),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=30,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=270, by_epoch=True, begin=30, end=300),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
auto_scale_lr = dict(base_batch_size=4096)
