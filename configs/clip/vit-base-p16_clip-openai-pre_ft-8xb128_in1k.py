# Full fine-tune of the zoo model vit-base-p16_clip-openai-pre_3rdparty_in1k on
# ImageNet-1k, 8 GPUs x 128 images:
#   tools/dist_train.sh configs/clip/vit-base-p16_clip-openai-pre_ft-8xb128_in1k.py 8 --resume
# Recipe in the style of BEiT / FT-CLIP fine-tuning (layer-wise LR decay, Mixup/CutMix,
# label smoothing, stochastic depth, EMA); not a reproduction of a published number.
# Data, pipelines and validation: datasets/imagenet_bs64_224.py (data_root
# data/imagenet); optimizer and schedule: schedules/imagenet_bs1024_adamw_ft.py as it is
# (AdamW lr 5e-4 for a total batch of 1024, weight decay 0.05, layer-wise LR decay 0.65,
# clipping at norm 1, 5 warm-up epochs then cosine to epoch 50).
_base_ = [
    '../_base_/models/clip_vit.py',
    '../_base_/datasets/imagenet_bs64_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_ft.py',
]

# CLIP ViT-B/16 at 224 px, with stochastic depth and label smoothing for training.
model = dict(
    backbone=dict(arch='b', patch_size=16, img_size=224, drop_path_rate=0.1),
    head=dict(in_channels=768, loss=dict(type='CrossEntropyLoss', label_smooth_val=0.1)),
)

# Mixup or CutMix (one per batch, as timm's switch_prob=0.5) on soft targets.
data_preprocessor = dict(
    batch_augments=dict(
        type='RandomBatchAugment',
        augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)],
        probs=[0.5, 0.5]),
)

train_dataloader = dict(batch_size=128, num_workers=8)
val_dataloader = dict(batch_size=128, num_workers=8)
test_dataloader = dict(batch_size=128, num_workers=8)

custom_hooks = [
    # Zoo weights before the first iteration; a resumed run skips this.
    dict(type='LoadPretrainedHook',
         checkpoint='https://download.openmmlab.com/mmclassification/v0/clip/'
         'clip-vit-base-p16_openai-pre_3rdparty_in1k_20221220-c7d9c899.pth'),
    # EMA of the weights (decay 0.9999); checkpoints then hold the EMA weights in
    # state_dict, which tools/test.py evaluates. Delete this line to turn EMA off.
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
]

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'))
randomness = dict(seed=0, diff_rank_seed=True)
