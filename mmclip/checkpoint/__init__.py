"""Reading, converting, downloading and loading checkpoints.

Importing this package changes nothing outside mmclip: mmengine's ``CheckpointLoader`` and
torch's allow-list stay as they are. mmclip's own loads (``get_model``, ``tools/test.py``,
``LoadPretrainedHook``, and ``load_from`` / ``resume`` of ``mmclip.engine.MMClipRunner``)
go through ``load_checkpoint``.
"""
from .convert import convert_timm_state_dict
from .download import CheckpointDownloadError, HashMismatchError, cache_dir, download_checkpoint
from .loader import CheckpointFormatError, StateDictMismatchError, load_checkpoint
from .safe_load import CheckpointReadError, UnsafeCheckpointError, read_checkpoint_file

__all__ = [
    'load_checkpoint', 'read_checkpoint_file', 'download_checkpoint', 'cache_dir',
    'convert_timm_state_dict', 'CheckpointDownloadError', 'CheckpointFormatError',
    'CheckpointReadError', 'HashMismatchError', 'StateDictMismatchError',
    'UnsafeCheckpointError'
]
