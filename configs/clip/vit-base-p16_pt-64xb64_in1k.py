# CLIP ViT-B/16 at 224 px, evaluated as its checkpoints were first published: short edge
# bicubic (pillow) to 224, center crop 224; CLIP mean / std. The zoo models' own configs
# (configs/clip/<model name>.py) use each checkpoint's crop_pct / crop_mode instead.
_base_ = ['../_base_/models/clip_vit.py', '../_base_/imagenet_eval.py']

model = dict(backbone=dict(arch='b', patch_size=16, img_size=224),
             head=dict(in_channels=768))
