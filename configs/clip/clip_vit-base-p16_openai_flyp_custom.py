# clip_vit-base-p16_openai_flyp_custom
# OpenAI CLIP ViT-B/16, your own image folders: FLYP, both towers fine-tuned with the contrastive
# loss against class prompts. Recipe and its sources: configs/_base_/robust_ft/flyp_custom.py;
# docs/robust_finetune.md.
# Run:  python tools/train.py configs/clip/clip_vit-base-p16_openai_flyp_custom.py --resume
_base_ = ['../_base_/clip_towers/vit-base-p16_openai.py',
          '../_base_/robust_ft/flyp_custom.py']

model = dict(backbone=_base_.clip_image_tower, text_backbone=_base_.clip_text_tower,
             head=_base_.clip_head_widths)
custom_hooks = [dict(type='LoadPretrainedHook', checkpoint=_base_.clip_weights)]
