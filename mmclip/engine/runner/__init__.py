from .precision_test_loop import PrecisionTestLoop
from .quiet_runner import QuietRunner

__all__ = ['PrecisionTestLoop', 'QuietRunner']
