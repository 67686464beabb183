from .precision import (
    PRECISIONS,
    amp_precision,
    autocast_context,
    check_device,
    check_precision,
    maybe_compile,
)

__all__ = ['PRECISIONS', 'amp_precision', 'autocast_context', 'check_device', 'check_precision',
           'maybe_compile']
