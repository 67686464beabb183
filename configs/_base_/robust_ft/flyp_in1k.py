# Robust fine-tuning with FLYP on ImageNet-1k: both CLIP towers and the logit scale train
# with CLIP's contrastive loss between each image and a prompt of its class (FLYPClassifier),
# and the model predicts zero-shot with its current towers. The config that uses this file
# adds the tower geometry and the LoadPretrainedHook of both towers' weights.
#
# Hyper-parameters of Goyal et al., "Finetune like you pretrain: Improved finetuning of
# zero-shot vision models" (arXiv:2212.00638), as github.com/locuslab/FLYP runs them on
# ImageNet (README "Script to reproduce on ImageNet": --epochs=10 --lr=1e-5 --wd=0.1
# --batch-size=512 --template=openai_imagenet_template; src/models/flyp_loss.py: AdamW on
# every weight, no gradient clipping, cosine schedule after 500 warm-up steps, ClipLoss
# with world size 1; every image paired with every template, sampled at random).
# The training crop is zs-init-ft_in1k.py's (FLYP's preprocessing is WiSE-FT's clip.py).
_base_ = ['./zs-init-ft_in1k.py']

model = dict(
    _delete_=True,
    type='FLYPClassifier',
    backbone=dict(type='VisionTransformer', img_size=224, pre_norm=True,
                  norm_cfg=dict(type='LN', eps=1e-5), out_type='cls_token', final_norm=True),
    head=dict(type='ZeroShotClsHead', classes='imagenet', templates='openai_imagenet'),
)
optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW', lr=1e-5, weight_decay=0.1))
