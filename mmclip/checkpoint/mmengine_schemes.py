"""Route mmengine's checkpoint loading (``load_from``, ``--resume``, ``Runner.load_checkpoint``)
through mmclip's safe loader.

mmengine 0.10.7's local loader calls ``torch.load`` without ``weights_only`` and its
http loader neither verifies hashes nor knows mirrors. Registering ours for the ``''``
(local) and ``http(s)://`` schemes gives the Runner the same reading as
``load_checkpoint``: ``weights_only=True`` with the training-checkpoint allow-list,
``.safetensors``, timm keys renamed, the verified download cache and ``MMCLIP_MIRRORS``.
Other schemes (``s3://``, ``torchvision://``, ...) keep mmengine's loaders.
"""
import os.path as osp
from typing import Any, Mapping

from mmengine.runner import CheckpointLoader

from .convert import convert_timm_state_dict, is_timm_state_dict
from .loader import fetch_source
from .safe_load import MapLocation, read_checkpoint_file


def _with_mmclip_keys(checkpoint: Any) -> Any:
    """A timm state dict renamed to mmclip keys (bare or under ``state_dict``); other
    checkpoints, including training ones with optimizer and meta, unchanged."""
    if not isinstance(checkpoint, Mapping):
        return checkpoint
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, Mapping) or not is_timm_state_dict(state_dict):
        return checkpoint
    converted = convert_timm_state_dict(state_dict)
    if state_dict is checkpoint:
        return converted
    return {**checkpoint, 'state_dict': converted}


def load_from_mmclip_local(filename: str, map_location: MapLocation = None) -> Any:
    return _with_mmclip_keys(read_checkpoint_file(osp.expanduser(filename), map_location))


def load_from_mmclip_http(filename: str, map_location: MapLocation = None) -> Any:
    return _with_mmclip_keys(read_checkpoint_file(fetch_source(filename), map_location))


def register_mmengine_schemes() -> None:
    """Make mmengine's CheckpointLoader use mmclip's loaders for local paths and URLs."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_mmclip_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                     loader=load_from_mmclip_http, force=True)
