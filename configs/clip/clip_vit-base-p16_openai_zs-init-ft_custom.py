# clip_vit-base-p16_openai_zs-init-ft_custom
# OpenAI CLIP ViT-B/16, your own image folders: end-to-end fine-tuning from the zero-shot head
# (WiSE-FT's fine-tuned end point). Recipe and its sources:
# configs/_base_/robust_ft/zs-init-ft_custom.py; docs/robust_finetune.md.
# Run:  python tools/train.py configs/clip/clip_vit-base-p16_openai_zs-init-ft_custom.py --resume
_base_ = ['../_base_/clip_towers/vit-base-p16_openai.py',
          '../_base_/robust_ft/zs-init-ft_custom.py']

model = dict(backbone=_base_.clip_image_tower, head=_base_.clip_head_widths)
# classes=None: the zero-shot head is built from the folder names.
custom_hooks = [
    dict(type='ZeroShotInitHook', checkpoint=_base_.clip_weights,
         text_backbone=_base_.clip_text_tower, classes=None,
         templates='openai_imagenet'),
]
