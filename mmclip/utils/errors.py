"""Errors raised by several layers (models, the checkpoint loader, the Python API)."""


class ZeroShotError(ValueError):
    """Bad zero-shot input: classes, templates, or a text-tower checkpoint for a
    vision-only model. The message says what was expected."""
