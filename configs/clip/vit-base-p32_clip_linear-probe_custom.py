# Linear probe of the zoo model vit-base-p32_clip-openai-pre_3rdparty_in1k on your own
# image folders: the whole backbone is frozen and only a new N-class head (here 10)
# is trained. Same data layout and pretrained weights as vit-base-p32_clip_ft_custom.py.
# Run:  python tools/train.py configs/clip/vit-base-p32_clip_linear-probe_custom.py --resume
_base_ = ['./vit-base-p32_clip_ft_custom.py']

num_classes = 10

# frozen_stages=12 freezes the embeddings, all 12 blocks and the final norm (no grad,
# kept in eval mode); no stochastic depth or label smoothing for a linear model.
model = dict(
    backbone=dict(frozen_stages=12, drop_path_rate=0.0),
    head=dict(num_classes=num_classes, loss=dict(type='CrossEntropyLoss', label_smooth_val=0.0)),
)
data_preprocessor = dict(num_classes=num_classes)

# Only the head trains, so neither layer-wise decay nor the ViT no-decay rules apply.
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=True, begin=1, end=10,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
