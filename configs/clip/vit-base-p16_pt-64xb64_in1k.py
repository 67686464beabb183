# CLIP ViT-B/16 at 224 px: mmpretrain's seed config, complete (model, data, schedule,
# runtime): it trains as mmpretrain's does (random resized crop + flip at 224 px, AdamW
# schedule of 300 epochs for 64 GPUs x 64 images) and tests as its checkpoints were first
# published (short edge bicubic (pillow) to 224, center crop 224; CLIP mean / std).
# The zoo models' own configs (configs/clip/<model name>.py) use each checkpoint's
# crop_pct / crop_mode instead.
_base_ = ['../_base_/models/clip_vit.py', '../_base_/datasets/imagenet_bs64_224.py',
          '../_base_/schedules/imagenet_bs4096_adamw.py']

model = dict(backbone=dict(arch='b', patch_size=16, img_size=224),
             head=dict(in_channels=768))
