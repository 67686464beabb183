# LP-FT stage 2 on your own image folders: full fine-tuning from the linear probe of
# zs-init-lp_custom.py, with the data and recipe of zs-init-ft_custom.py (see lp-ft_in1k.py).
_base_ = ['./zs-init-ft_custom.py']
