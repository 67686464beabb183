# Linear probe from the zero-shot head (LP-FT stage 1) on your own image folders: the data
# of zs-init-ft_custom.py, the frozen tower and head-only learning rate of
# zs-init-lp_in1k.py (its comments say where each value comes from).
_base_ = ['./zs-init-ft_custom.py']

model = dict(head=dict(freeze_proj=True))
optim_wrapper = dict(optimizer=dict(lr=1e-3))
