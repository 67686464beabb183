# clip_vit-large-p14_laion2b_lp-ft_in1k
# LAION-2B CLIP ViT-L/14 (open_clip laion2b_s32b_b82k), ImageNet-1k: LP-FT stage 2, full
# fine-tuning from the linear probe. Recipe and its sources:
# configs/_base_/robust_ft/lp-ft_in1k.py; docs/robust_finetune.md. Run it after
# clip_vit-large-p14_laion2b_zs-init-lp_in1k.py, whose last checkpoint it loads (--pretrained PATH
# loads another).
# Run:  tools/dist_train.sh configs/clip/clip_vit-large-p14_laion2b_lp-ft_in1k.py 8 --resume
_base_ = ['../_base_/clip_towers/vit-large-p14_laion2b.py',
          '../_base_/robust_ft/lp-ft_in1k.py']

model = dict(backbone=_base_.clip_image_tower, head=_base_.clip_head_widths)
data_preprocessor = dict(_base_.clip_normalisation)
custom_hooks = [
    dict(type='LoadPretrainedHook',
         checkpoint='work_dirs/clip_vit-large-p14_laion2b_zs-init-lp_in1k/epoch_10.pth',
         drop_mismatched_head=False),
]
