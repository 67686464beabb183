"""Load published, mmpretrain, timm and training checkpoints into mmclip models.

Sources are local files (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``) or http(s)
URLs (downloaded once into the torch.hub cache, verified, see ``download.py``); a list
of sources is tried in order, moving on when a URL cannot be fetched. Files are read
without executing pickled code (``safe_load.py``). Formats are recognised by their keys:

- mmclip / mmpretrain: ``backbone.*`` / ``head.*``, bare or under ``state_dict``
  (a ``module.`` prefix from DistributedDataParallel is dropped);
- timm: ``blocks.*`` / ``patch_embed.proj.*``, renamed with ``convert.TIMM_TO_MMCLIP``;
- open_clip (both CLIP towers): ``visual.*`` / ``token_embedding.*``, renamed with
  ``convert_open_clip.OPEN_CLIP_TO_MMCLIP``.

``load_checkpoint`` then checks every key and shape against the model. The one
documented exception: a position embedding laid out for another input size is resampled
(as timm does) with a logged warning.
"""
import logging
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import barrier, get_local_rank, get_world_size
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmclip.models.utils.embed import resize_pos_embed
from .convert import convert_timm_state_dict, is_timm_state_dict
from .convert_open_clip import convert_open_clip_state_dict, is_open_clip_state_dict
from .download import CheckpointDownloadError, download_checkpoint, is_url
from .safe_load import MapLocation, read_checkpoint_file

Sources = Union[str, Sequence[str]]
_DDP_PREFIX = re.compile(r'^module\.')


class StateDictMismatchError(ValueError):
    """Checkpoint keys or shapes do not match the model; the message lists them all."""


# ---- where the file comes from -------------------------------------------------------------
def _download_once_per_node(url: str, mirrors: Optional[Mapping[str, str]],
                            progress: bool) -> str:
    """Local rank 0 downloads while the other ranks wait, then they read its cache."""
    if get_world_size() == 1:
        return download_checkpoint(url, mirrors, progress)
    if get_local_rank() == 0:
        try:
            return download_checkpoint(url, mirrors, progress)
        finally:
            barrier()
    barrier()
    return download_checkpoint(url, mirrors, progress=False)


def fetch_source(sources: Sources,
                 mirrors: Optional[Mapping[str, str]] = None,
                 progress: bool = True) -> str:
    """The local path of the first source that can be had.

    Args:
        sources: a path or URL, or several tried in order (a URL that cannot be fetched,
            or fails its hash check, moves on to the next one with a logged warning).
        mirrors: URL prefix -> mirror prefix or local folder (see ``download.py``).

    Raises:
        CheckpointDownloadError: no source could be fetched; lists each attempt.
    """
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise ValueError('No checkpoint source given.')
    failures = []
    for index, source in enumerate(sources):
        if not is_url(source):
            return source
        try:
            return _download_once_per_node(source, mirrors, progress)
        except CheckpointDownloadError as err:
            failures.append(err)
            if index + 1 < len(sources):
                print_log(f'{err}\nTrying the next source: {sources[index + 1]}',
                          logger='current', level=logging.WARNING)
    if len(failures) == 1:
        raise failures[0]
    raise CheckpointDownloadError('No checkpoint source could be fetched:\n  - ' +
                                  '\n  - '.join(map(str, failures)))


def load_source(sources: Sources,
                map_location: MapLocation = 'cpu',
                mirrors: Optional[Mapping[str, str]] = None,
                progress: bool = True) -> Any:
    """Fetch and read a checkpoint as stored (a state dict or a training checkpoint dict)."""
    return read_checkpoint_file(fetch_source(sources, mirrors, progress), map_location)


# ---- which format it is ----------------------------------------------------------------------
def extract_state_dict(checkpoint: Any, name: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The mmclip-keyed state dict inside a loaded checkpoint of any supported format.

    Raises:
        ValueError: no state dict of tensors inside.
        KeyError: a timm checkpoint with keys the conversion table has no row for.
    """
    state_dict = checkpoint
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
        state_dict = checkpoint['state_dict']
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError(f'{name} holds no state dict (got {type(checkpoint).__name__}); '
                         f'expected a dict of tensors, bare or under "state_dict".')
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f'{name}: these state-dict entries are not tensors: {not_tensors[:10]}'
                         f'{" ..." if len(not_tensors) > 10 else ""}')
    state_dict = {_DDP_PREFIX.sub('', k): v for k, v in state_dict.items()}
    if is_timm_state_dict(state_dict):
        return convert_timm_state_dict(state_dict)
    if is_open_clip_state_dict(state_dict):
        return convert_open_clip_state_dict(state_dict)
    return state_dict


def load_state_dict_from_source(sources: Sources,
                                map_location: MapLocation = 'cpu',
                                mirrors: Optional[Mapping[str, str]] = None,
                                progress: bool = True) -> Dict[str, torch.Tensor]:
    """Fetch, read and rename a checkpoint: mmclip keys -> tensors (no model check)."""
    return extract_state_dict(load_source(sources, map_location, mirrors, progress),
                              name=describe_sources(sources))


# ---- does it fit the model -----------------------------------------------------------------
def _grid(num_patches: int, key: str) -> Tuple[int, int]:
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise StateDictMismatchError(f'{key}: {num_patches} patch tokens do not form a square '
                                     f'grid; cannot resample it.')
    return side, side


def _resample_pos_embeds(state_dict: Dict[str, torch.Tensor], model: nn.Module,
                         expected: Mapping[str, torch.Size], name: str, logger) -> None:
    """Resample ``*pos_embed`` [1, extra + Hs*Ws, C] to the model's [1, extra + Hd*Wd, C]."""
    for key, value in list(state_dict.items()):
        target = expected.get(key)
        if (not key.endswith('pos_embed') or target is None or value.shape == target
                or value.ndim != 3 or value.shape[-1] != target[-1]):
            continue
        owner = model.get_submodule(key.rpartition('.')[0]) if '.' in key else model
        extra = getattr(owner, 'num_extra_tokens', 1)
        src, dst = _grid(value.shape[1] - extra, key), _grid(target[1] - extra, key)
        state_dict[key] = resize_pos_embed(value, src, dst, extra)
        print_log(f'Resampled {key} of {name} from a {src[0]}x{src[1]} to a {dst[0]}x{dst[1]} '
                  f'patch grid: the checkpoint was trained at another input size than the '
                  f'model is built for, so its accuracy may differ from the published one.',
                  logger=logger, level=logging.WARNING)


def _mismatches(state_dict: Mapping[str, torch.Tensor],
                expected: Mapping[str, torch.Size]) -> Tuple[List[str], List[str], List[str]]:
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k])}'
                    for k, v in state_dict.items() if k in expected and v.shape != expected[k])
    return missing, unexpected, shapes


def _mismatch_report(name: str, missing: List[str], unexpected: List[str],
                     shapes: List[str]) -> str:
    parts = [f'{title} ({len(items)}):\n    ' + '\n    '.join(items)
             for title, items in (('missing keys', missing), ('unexpected keys', unexpected),
                                  ('shape mismatches', shapes)) if items]
    return f'{name} does not match the model:\n  ' + '\n  '.join(parts)


def load_checkpoint(model: nn.Module,
                    source: Sources,
                    map_location: MapLocation = 'cpu',
                    strict: bool = True,
                    logger: Union[str, logging.Logger, None] = None,
                    mirrors: Optional[Mapping[str, str]] = None,
                    progress: bool = True) -> Any:
    """Load a checkpoint into ``model`` and return it as stored.

    Args:
        model: the mmclip model (a DDP wrapper is unwrapped).
        source: local path or http(s) URL, or several tried in order.
        map_location: as for ``torch.load``.
        strict: every model key present and every checkpoint key used, shapes equal
            (``pos_embed`` of another grid excepted: resampled, with a warning). With
            ``strict=False`` the unmatched and mis-shaped tensors are skipped and listed
            in a warning (e.g. a 1000-class head when fine-tuning on 10 classes).
        logger: mmengine logger or its name (default: the current one).
        mirrors: URL prefix -> mirror prefix or local folder (merged over the
            ``MMCLIP_MIRRORS`` environment variable).
        progress: show a download progress bar.

    Returns:
        The loaded object (a state dict, or a dict with ``state_dict`` and ``meta``).

    Raises:
        StateDictMismatchError: with ``strict``, listing missing / unexpected keys and
            shape mismatches.
        CheckpointDownloadError, UnsafeCheckpointError, CheckpointReadError: see
            ``fetch_source`` and ``read_checkpoint_file``.
    """
    name = describe_sources(source)
    checkpoint = load_source(source, map_location, mirrors, progress)
    load_state_dict_into(model, extract_state_dict(checkpoint, name), name, strict,
                         logger=logger)
    return checkpoint


def load_state_dict_into(model: nn.Module,
                         state_dict: Dict[str, torch.Tensor],
                         name: str = 'checkpoint',
                         strict: bool = True,
                         drop_prefixes: Sequence[str] = (),
                         logger: Union[str, logging.Logger, None] = None) -> List[str]:
    """Load an mmclip-keyed state dict into ``model`` with ``load_checkpoint``'s checks.

    Args:
        model: the mmclip model (a DDP wrapper is unwrapped).
        state_dict: mmclip keys -> tensors (``state_dict`` is not changed).
        name: how messages name the checkpoint.
        strict: as in ``load_checkpoint``.
        drop_prefixes: keys under these prefixes that do not fit (missing, unexpected or
            of another shape) are left out even with ``strict``, e.g. ``('head.', )`` to
            put a 1000-class checkpoint into a 10-class model; the model keeps its own
            tensors there. Not logged here: the caller says why.

    Returns:
        The descriptions of what ``drop_prefixes`` left out.
    """
    logger = logger or 'current'
    model = model.module if is_model_wrapper(model) else model
    state_dict = dict(state_dict)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    _resample_pos_embeds(state_dict, model, expected, name, logger)
    prefixes = tuple(drop_prefixes)
    kept: Tuple[List[str], ...] = ([], [], [])
    dropped: List[str] = []
    for found, kind in zip(_mismatches(state_dict, expected), kept):
        for item in found:
            (dropped if prefixes and item.startswith(prefixes) else kind).append(item)
    missing, unexpected, shapes = kept
    if strict and (missing or unexpected or shapes):
        raise StateDictMismatchError(_mismatch_report(name, missing, unexpected, shapes))
    if missing or unexpected or shapes:
        print_log(_mismatch_report(name, missing, unexpected, shapes) +
                  '\n(strict=False: the mis-shaped and unexpected tensors were skipped)',
                  logger=logger, level=logging.WARNING)
    model.load_state_dict({k: v for k, v in state_dict.items()
                           if k in expected and v.shape == expected[k]}, strict=False)
    print_log(f'Loaded checkpoint {name}', logger=logger, level=logging.INFO)
    return dropped


def describe_sources(sources: Sources) -> str:
    """A path or URL, or several joined with 'or', for messages."""
    return sources if isinstance(sources, str) else ' or '.join(sources)
