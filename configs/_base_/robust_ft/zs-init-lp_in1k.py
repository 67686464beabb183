# Robust fine-tuning, linear probe from the zero-shot head (stage 1 of LP-FT): the image
# tower and its projection are frozen, only the CLIPLinearClsHead's Linear trains, starting
# from the zero-shot classifier (as WiSE-FT's "linear classifier" end point, wise-ft
# --freeze-encoder). The tower config freezes all its blocks (frozen_stages = depth).
# WiSE-FT trains its linear classifier with the end-to-end settings; this recipe keeps them
# (AdamW, weight decay 0.1, batch 512, warm-up then cosine, clipping at 1) with a larger
# learning rate for a lone linear layer, 1e-3, which is an mmclip choice, not a published
# value (wise-ft's own --lr default is 1e-3).
_base_ = ['./zs-init-ft_in1k.py']

model = dict(head=dict(freeze_proj=True))
optim_wrapper = dict(optimizer=dict(lr=1e-3))
