# Robust fine-tuning, LP-FT stage 2: full fine-tuning that starts from the linear probe of
# zs-init-lp_in1k.py (Kumar et al., "Fine-Tuning can Distort Pretrained Features and
# Underperform Out-of-Distribution", arXiv:2202.10054: a good head first, so that
# fine-tuning changes the features less). The config that uses this file loads the linear
# probe's last checkpoint through LoadPretrainedHook (exact match, head included); the rest
# is the end-to-end recipe of zs-init-ft_in1k.py (WiSE-FT's hyper-parameters, cited there).
_base_ = ['./zs-init-ft_in1k.py']
