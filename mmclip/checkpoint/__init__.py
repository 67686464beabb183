"""Checkpoint conversion, safe reading, verified downloads and loading.

Importing this package allow-lists the types of mmengine training checkpoints for
``torch.load(weights_only=True)`` and routes mmengine's local and http(s) checkpoint
loading through mmclip's loader, so ``load_from`` and ``--resume`` work under
torch >= 2.6 without turning ``weights_only`` off.
"""
from .convert import TIMM_TO_MMCLIP, convert_timm_state_dict, is_timm_state_dict, rename_key
from .download import (MIRRORS_ENV, CheckpointDownloadError, HashMismatchError, cache_dir,
                       cached_file_name, download_checkpoint, resolve_mirror)
from .loader import (StateDictMismatchError, describe_sources, extract_state_dict, fetch_source,
                     load_checkpoint, load_source, load_state_dict_from_source,
                     load_state_dict_into)
from .mmengine_schemes import register_mmengine_schemes
from .safe_load import (CheckpointReadError, UnsafeCheckpointError, read_checkpoint_file,
                        register_safe_globals)

register_safe_globals()
register_mmengine_schemes()

__all__ = [
    'TIMM_TO_MMCLIP', 'convert_timm_state_dict', 'is_timm_state_dict', 'rename_key',
    'MIRRORS_ENV', 'CheckpointDownloadError', 'HashMismatchError', 'cache_dir',
    'cached_file_name', 'download_checkpoint', 'resolve_mirror', 'StateDictMismatchError',
    'describe_sources', 'extract_state_dict', 'fetch_source', 'load_checkpoint', 'load_source',
    'load_state_dict_from_source', 'load_state_dict_into', 'register_mmengine_schemes', 'CheckpointReadError',
    'UnsafeCheckpointError', 'read_checkpoint_file', 'register_safe_globals'
]
