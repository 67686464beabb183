"""mmclip's Runner with a console that shows what a user acts on.

mmengine logs the system environment, the whole config and the hook order at INFO while a
Runner is built: about 300 lines before the first useful one. ``QuietRunner`` shows only
warnings and errors on the console while it is built, and mmengine's notices about its
own deprecated calls never; the log file in the work dir has every line (the tools'
``--verbose`` uses ``MMClipRunner`` as it is).
"""
import logging
from typing import List, Tuple

from mmengine.logging import MMLogger

from .runner import MMClipRunner

# Deprecation notices about calls mmengine's own CheckpointHook makes on every training run;
# a user can do nothing about them. Matched by their text: should mmengine reword them,
# they would show on the console again, and nothing else would change.
MMENGINE_DEPRECATIONS = ('"FileClient" will be deprecated',
                         '"HardDiskBackend" is the alias of "LocalBackend"')


class MMEngineDeprecationFilter(logging.Filter):
    """Drops mmengine's warnings about its own deprecated calls (``MMENGINE_DEPRECATIONS``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno != logging.WARNING
                or not str(record.msg).startswith(MMENGINE_DEPRECATIONS))


class QuietRunner(MMClipRunner):
    """``MMClipRunner`` whose console is at WARNING while the Runner is built (the set-up
    records go to the log file only); build it as the Runner, e.g.
    ``QuietRunner.from_cfg(cfg)``."""

    def __init__(self, *args, **kwargs) -> None:
        self._quieted: List[Tuple[logging.Handler, int]] = []
        super().__init__(*args, **kwargs)
        for handler, level in self._quieted:
            handler.setLevel(level)

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                self._quieted.append((handler, handler.level))
                handler.setLevel(max(handler.level, logging.WARNING))
                handler.addFilter(MMEngineDeprecationFilter())
        return logger
