"""mmclip's Runner with a console that shows what a user acts on.

mmengine logs the system environment, the whole config and the hook order at INFO when a
Runner starts: about 300 lines before the first useful one. ``QuietRunner`` keeps them (and
mmengine's warnings about its own deprecated calls) out of the console; the log file in the
work dir still has every line (the tools' ``--verbose`` uses ``MMClipRunner`` as it is).
"""
import logging

from mmengine.logging import MMLogger

from .runner import MMClipRunner

# How the set-up records mmengine logs at INFO begin.
SETUP_MESSAGES = ('\n' + '-' * 60 + '\nSystem environment:', 'Config:\n',
                  'Hooks will be executed in the following order',
                  'Distributed training is not used')
# Deprecation notices about calls mmengine's own CheckpointHook makes on every run; a user
# can do nothing about them.
MMENGINE_DEPRECATIONS = ('"FileClient" will be deprecated',
                         '"HardDiskBackend" is the alias of "LocalBackend"')


class SetupRecordFilter(logging.Filter):
    """Drops mmengine's set-up records (``SETUP_MESSAGES``) at INFO or below and its
    notices about its own deprecated calls (``MMENGINE_DEPRECATIONS``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.levelno <= logging.INFO and message.startswith(SETUP_MESSAGES):
            return False
        return record.levelno > logging.WARNING or not message.startswith(MMENGINE_DEPRECATIONS)


class QuietRunner(MMClipRunner):
    """``MMClipRunner`` whose console handler leaves out the set-up records; build it as the
    Runner, e.g. ``QuietRunner.from_cfg(cfg)``."""

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and not any(
                    isinstance(f, SetupRecordFilter) for f in handler.filters):
                handler.addFilter(SetupRecordFilter())
        return logger
