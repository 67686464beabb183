from .precision import (PRECISIONS, autocast_context, check_precision,
                        maybe_compile)

__all__ = ['PRECISIONS', 'autocast_context', 'check_precision', 'maybe_compile']
