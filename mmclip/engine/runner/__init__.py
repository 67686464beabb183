from .precision_test_loop import PrecisionTestLoop

__all__ = ['PrecisionTestLoop']
