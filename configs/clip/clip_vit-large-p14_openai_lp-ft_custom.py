# clip_vit-large-p14_openai_lp-ft_custom
# OpenAI CLIP ViT-L/14, your own image folders: LP-FT stage 2, full fine-tuning from the linear
# probe. Recipe and its sources: configs/_base_/robust_ft/lp-ft_custom.py;
# docs/robust_finetune.md. Run it after clip_vit-large-p14_openai_zs-init-lp_custom.py, whose last
# checkpoint it loads (--pretrained PATH loads another).
# Run:  python tools/train.py configs/clip/clip_vit-large-p14_openai_lp-ft_custom.py --resume
_base_ = ['../_base_/clip_towers/vit-large-p14_openai.py',
          '../_base_/robust_ft/lp-ft_custom.py']

model = dict(backbone=_base_.clip_image_tower, head=_base_.clip_head_widths)
custom_hooks = [
    dict(type='LoadPretrainedHook',
         checkpoint='work_dirs/clip_vit-large-p14_openai_zs-init-lp_custom/epoch_10.pth',
         drop_mismatched_head=False),
]
