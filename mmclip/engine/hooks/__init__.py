from .load_pretrained_hook import LoadPretrainedHook, load_pretrained
from .zero_shot_init_hook import ZeroShotInitHook

__all__ = ['LoadPretrainedHook', 'load_pretrained', 'ZeroShotInitHook']
