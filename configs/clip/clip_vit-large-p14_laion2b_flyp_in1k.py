# clip_vit-large-p14_laion2b_flyp_in1k
# LAION-2B CLIP ViT-L/14 (open_clip laion2b_s32b_b82k), ImageNet-1k: FLYP, both towers fine-tuned
# with the contrastive loss against class prompts. Recipe and its sources:
# configs/_base_/robust_ft/flyp_in1k.py; docs/robust_finetune.md.
# Run:  tools/dist_train.sh configs/clip/clip_vit-large-p14_laion2b_flyp_in1k.py 8 --resume
_base_ = ['../_base_/clip_towers/vit-large-p14_laion2b.py',
          '../_base_/robust_ft/flyp_in1k.py']

model = dict(backbone=_base_.clip_image_tower, text_backbone=_base_.clip_text_tower,
             head=_base_.clip_head_widths)
data_preprocessor = dict(_base_.clip_normalisation)
custom_hooks = [dict(type='LoadPretrainedHook', checkpoint=_base_.clip_weights)]
