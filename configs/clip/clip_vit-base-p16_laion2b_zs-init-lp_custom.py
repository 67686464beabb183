# clip_vit-base-p16_laion2b_zs-init-lp_custom
# LAION-2B CLIP ViT-B/16 (open_clip laion2b_s34b_b88k), your own image folders: linear probe from
# the zero-shot head (LP-FT stage 1). Recipe and its sources:
# configs/_base_/robust_ft/zs-init-lp_custom.py; docs/robust_finetune.md.
# Run:  python tools/train.py configs/clip/clip_vit-base-p16_laion2b_zs-init-lp_custom.py --resume
_base_ = ['../_base_/clip_towers/vit-base-p16_laion2b.py',
          '../_base_/robust_ft/zs-init-lp_custom.py']

# The whole image tower frozen: only the linear head trains.
model = dict(backbone=dict(_base_.clip_image_tower, frozen_stages=_base_.clip_num_layers),
             head=_base_.clip_head_widths)
# classes=None: the zero-shot head is built from the folder names.
custom_hooks = [
    dict(type='ZeroShotInitHook', checkpoint=_base_.clip_weights,
         text_backbone=_base_.clip_text_tower, classes=None,
         templates='openai_imagenet'),
]
