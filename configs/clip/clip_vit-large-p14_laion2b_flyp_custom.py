# clip_vit-large-p14_laion2b_flyp_custom
# LAION-2B CLIP ViT-L/14 (open_clip laion2b_s32b_b82k), your own image folders: FLYP, both towers
# fine-tuned with the contrastive loss against class prompts. Recipe and its sources:
# configs/_base_/robust_ft/flyp_custom.py; docs/robust_finetune.md.
# Run:  python tools/train.py configs/clip/clip_vit-large-p14_laion2b_flyp_custom.py --resume
_base_ = ['../_base_/clip_towers/vit-large-p14_laion2b.py',
          '../_base_/robust_ft/flyp_custom.py']

model = dict(backbone=_base_.clip_image_tower, text_backbone=_base_.clip_text_tower,
             head=_base_.clip_head_widths)
data_preprocessor = dict(_base_.clip_normalisation)
custom_hooks = [dict(type='LoadPretrainedHook', checkpoint=_base_.clip_weights)]
