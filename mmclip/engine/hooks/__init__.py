from .load_pretrained_hook import LoadPretrainedHook, load_pretrained

__all__ = ['LoadPretrainedHook', 'load_pretrained']
