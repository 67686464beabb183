"""mmengine's Runner with mmclip's checkpoint reading for ``load_from`` and ``--resume``.

mmengine 0.10.7 reads checkpoints through ``CheckpointLoader``, whose local and http
schemes are process-wide: replacing them would change how every other OpenMMLab library in
the process loads its checkpoints. This Runner uses mmclip's loader for its own loads only:
read without executing pickled code (``mmclip.checkpoint.safe_load``), URLs from the
verified download cache, timm keys renamed, weights checked. It also saves its training
checkpoints' message hub as plain data (``SaveTrainingStateAsDataHook``), so that
resuming needs no allow-listed classes at all, and adds to mmengine's environment record
what results and speed depend on (the CPU's name, mmclip's and its backends' versions).

Build it with ``MMClipRunner.from_cfg(cfg)``, or ``RUNNERS.build(cfg)`` with
``runner_type='MMClipRunner'`` in the config.
"""
from typing import Any, Callable, List, Tuple, Union

from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmclip.checkpoint.loader import CheckpointFormatError, load_source_into
from mmclip.checkpoint.safe_load import to_plain_data
from mmclip.registry import HOOKS, RUNNERS
from mmclip.utils.collect_env import collect_env


@HOOKS.register_module()
class SaveTrainingStateAsDataHook(Hook):
    """Before a checkpoint is written, replace the HistoryBuffers and numpy values of its
    message hub and meta by tensors and numbers (``safe_load.to_plain_data``)."""

    priority = 'LOWEST'  # after every hook that adds to the checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('message_hub', 'meta'):
            if key in checkpoint:
                checkpoint[key] = to_plain_data(checkpoint[key])


@RUNNERS.register_module()
class MMClipRunner(Runner):
    """``mmengine.runner.Runner`` whose ``load_checkpoint`` (used by ``load_from`` and
    ``resume``) is mmclip's safe, converting, verifying loader."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_hook(SaveTrainingStateAsDataHook())
        self.logger.info(f'mmclip environment:{_indented(collect_env())}')

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: List[Tuple[str, str]] = [(r'^module.', '')]) -> dict:
        """Load ``filename`` (a path or http(s) URL) into the model and return it as stored.

        ``revise_keys`` is accepted for mmengine's signature; the ``module.`` prefix it
        removes by default is always dropped (``extract_state_dict``). The checkpoint's
        ``meta['config']`` is left out of what is returned (``_check_resume_meta``).
        """
        def before_load(checkpoint: Any, name: str) -> None:
            _check_resume_meta(checkpoint, name)
            self.call_hook('after_load_checkpoint', checkpoint=checkpoint)  # e.g. EMA's swap

        checkpoint = load_source_into(self.model, filename, strict=strict, logger=self.logger,
                                      before_load=before_load,
                                      map_location=map_location).checkpoint
        self._has_loaded = True
        return checkpoint


def _check_resume_meta(checkpoint: Any, name: str) -> None:
    """Make ``meta`` safe for mmengine's ``Runner.resume``, which hands ``meta['config']``
    to ``Config.fromstring`` (executing it as Python) to compare GPU counts: that key is
    removed, never read. The counters resume uses must be what they claim.

    Raises:
        CheckpointFormatError: ``meta`` is not a dict, or its ``epoch`` / ``iter`` is not
            a non-negative int; naming the file.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise CheckpointFormatError(f'{name}: meta is a {type(meta).__name__}; expected a dict.')
    meta.pop('config', None)
    for key in ('epoch', 'iter'):
        value = meta.get(key, 0)
        if type(value) is not int or value < 0:
            raise CheckpointFormatError(f'{name}: meta.{key} is {value!r}; expected a '
                                        f'non-negative int.')


def _indented(items: dict) -> str:
    return ''.join(f'\n    {key}: {value}' for key, value in items.items())
