"""Start fine-tuning from pre-trained weights, unless the run resumes.

Why a hook and not ``load_from``: ``tools/train.py --resume`` (auto) clears ``load_from``
so that a re-submitted job continues from its own latest checkpoint; a first submission
with ``--resume`` would then silently train from random weights. This hook loads the
pre-trained weights right before the first iteration, and only when the Runner has not
loaded a checkpoint itself (``--resume`` / ``load_from``), so one command line serves the
first submission and every re-submission after a preemption.
"""
import logging
from typing import List, Mapping, Optional, Sequence, Union

from mmengine.hooks import Hook
from mmengine.logging import print_log
from torch import nn

from mmclip.checkpoint.loader import load_source_into
from mmclip.registry import HOOKS

HEAD_PREFIX = 'head.'


def load_pretrained(model: nn.Module,
                    source: Union[str, Sequence[str]],
                    drop_mismatched_head: bool = True,
                    mirrors: Optional[Mapping[str, str]] = None,
                    logger: Union[str, logging.Logger] = 'current') -> List[str]:
    """Load ``source`` into ``model``, strictly except for a head that does not fit.

    With ``drop_mismatched_head``, checkpoint tensors under ``head.`` whose key or shape
    the model does not have (a 1000-class head for a 10-class model) are dropped with a
    logged line, and the model's new head keeps its initialisation; every other key and
    shape must match (``pos_embed`` of another grid is resampled by the loader).

    Returns:
        The descriptions of the dropped head tensors (empty if the head fitted).

    Raises:
        StateDictMismatchError: a mismatch outside the head (or any, without
            ``drop_mismatched_head``), listing them all.
    """
    loaded = load_source_into(model, source, strict=True, logger=logger, mirrors=mirrors,
                              drop_prefixes=(HEAD_PREFIX, ) if drop_mismatched_head else ())
    if loaded.dropped:
        print_log(f'Dropped the head of pre-trained checkpoint {loaded.name}, which does not '
                  f'fit the model; the new head keeps its initialisation:\n  ' +
                  '\n  '.join(loaded.dropped), logger=logger, level=logging.WARNING)
    return loaded.dropped


@HOOKS.register_module()
class LoadPretrainedHook(Hook):
    """Load pre-trained weights before the first training iteration of a fresh run.

    Config (in ``custom_hooks``)::

        dict(type='LoadPretrainedHook', checkpoint='https://.../clip-vit-base-p32_...pth')

    Config keys:
        checkpoint: a path or http(s) URL (mmclip, mmpretrain or timm keys; see
            ``mmclip.checkpoint.load_checkpoint``), or several tried in order.
        drop_mismatched_head: drop a checkpoint head that does not fit the model's
            (new number of classes) with a logged line, instead of failing. Default True.
        mirrors: URL prefix -> mirror prefix or local folder, for offline clusters.

    Skipped, with a logged line, when the Runner loaded a checkpoint itself (resume or
    ``load_from``): those weights already include, or deliberately replace, these.
    Runs after the model is built, initialised and wrapped, on every rank (the loader
    downloads a URL once per node); EMA copies the loaded weights at its first update.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 checkpoint: Union[str, Sequence[str]],
                 drop_mismatched_head: bool = True,
                 mirrors: Optional[Mapping[str, str]] = None) -> None:
        if not checkpoint:
            raise ValueError('LoadPretrainedHook needs checkpoint= a path or URL.')
        self.checkpoint = checkpoint
        self.drop_mismatched_head = drop_mismatched_head
        self.mirrors = mirrors
        self._runner_loaded_checkpoint = False

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._runner_loaded_checkpoint = True

    def before_train(self, runner) -> None:
        if self._runner_loaded_checkpoint:
            runner.logger.info(f'LoadPretrainedHook: skipped {self.checkpoint}; the weights '
                               'come from the checkpoint the run resumed or loaded.')
            return
        self.load(runner)

    def load(self, runner) -> None:
        """Load the weights into ``runner.model`` (a fresh run only)."""
        load_pretrained(runner.model, self.checkpoint, self.drop_mismatched_head,
                        self.mirrors, runner.logger)
