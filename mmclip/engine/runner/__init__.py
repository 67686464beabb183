from .precision_test_loop import PrecisionTestLoop
from .runner import MMClipRunner, SaveTrainingStateAsDataHook

__all__ = ['MMClipRunner', 'PrecisionTestLoop', 'SaveTrainingStateAsDataHook']
