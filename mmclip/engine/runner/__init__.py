from .precision_test_loop import PrecisionTestLoop
from .quiet_runner import QuietRunner
from .runner import MMClipRunner, SaveTrainingStateAsDataHook

__all__ = ['MMClipRunner', 'PrecisionTestLoop', 'QuietRunner', 'SaveTrainingStateAsDataHook']
