# clip_vit-base-p16_openai_zs-init-lp_in1k
# OpenAI CLIP ViT-B/16, ImageNet-1k: linear probe from the zero-shot head (LP-FT stage 1). Recipe
# and its sources: configs/_base_/robust_ft/zs-init-lp_in1k.py; docs/robust_finetune.md.
# Run:  tools/dist_train.sh configs/clip/clip_vit-base-p16_openai_zs-init-lp_in1k.py 8 --resume
_base_ = ['../_base_/clip_towers/vit-base-p16_openai.py',
          '../_base_/robust_ft/zs-init-lp_in1k.py']

# The whole image tower frozen: only the linear head trains.
model = dict(backbone=dict(_base_.clip_image_tower, frozen_stages=_base_.clip_num_layers),
             head=_base_.clip_head_widths)
custom_hooks = [
    dict(type='ZeroShotInitHook', checkpoint=_base_.clip_weights,
         text_backbone=_base_.clip_text_tower, classes='imagenet',
         templates='openai_imagenet'),
]
