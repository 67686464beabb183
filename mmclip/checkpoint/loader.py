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
import re
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import barrier, get_local_rank, get_world_size
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmclip.utils.errors import ZeroShotError

from .convert import convert_timm_state_dict, is_timm_state_dict
from .convert_open_clip import (
    TEXT_TOWER_PREFIX,
    convert_open_clip_state_dict,
    is_open_clip_state_dict,
)
from .download import (
    CheckpointDownloadError,
    Fetched,
    cached_copy,
    fetch_url,
    is_url,
    open_verified,
    verify_local_file,
)
from .safe_load import (
    MapLocation,
    read_checkpoint_file,
)

Sources = Union[str, Sequence[str]]
_DDP_PREFIX = re.compile(r'^module\.')
CLASSIFIER_HEAD_KEY = 'head.layers.head.weight'  # the linear head of an image classifier


class StateDictMismatchError(ValueError):
    """Checkpoint keys or shapes do not match the model; the message lists them all."""


# ---- where the file comes from -------------------------------------------------------------
def _download_once_per_node(url: str, mirrors: Optional[Mapping[str, str]],
                            progress: bool) -> Fetched:
    """Local rank 0 downloads while the other ranks wait, then they read its cache."""
    if get_world_size() == 1:
        return fetch_url(url, mirrors, progress)
    if get_local_rank() == 0:
        try:
            return fetch_url(url, mirrors, progress)
        finally:
            barrier()
    barrier()
    return fetch_url(url, mirrors, progress=False)


def fetch_checkpoint(sources: Sources,
                     mirrors: Optional[Mapping[str, str]] = None,
                     progress: bool = True) -> Fetched:
    """The first source that can be had, verified, and where it came from.

    Args:
        sources: a path or URL, or several tried in order, a URL already in the cache
            first (a URL that cannot be fetched, or a file that fails its hash check,
            moves on to the next one with a logged warning). A local file whose name
            carries a hash (``...-b384e830.pth``, the OpenMMLab / mmpretrain naming) is
            verified like a download.
        mirrors: URL prefix -> mirror prefix or local folder (see ``download.py``).

    Raises:
        CheckpointDownloadError: no source could be fetched; lists each attempt.
    """
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise ValueError('No checkpoint source given.')
    # A source already in the cache is used without trying the ones before it again: a
    # fallback that worked once is not preceded by the same failed fetch on every run.
    cached = [s for s in sources if is_url(s) and cached_copy(s)]
    sources = cached[:1] + [s for s in sources if s not in cached[:1]]
    failures = []
    for index, source in enumerate(sources):
        try:
            if not is_url(source):
                verify_local_file(source)
                return Fetched(source, source, source)
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


def read_source(sources: Sources, map_location: MapLocation = 'cpu',
                mirrors: Optional[Mapping[str, str]] = None,
                progress: bool = True) -> Tuple[Any, str]:
    """The checkpoint as stored (memory-mapped), and the name of the source it was read
    from (for messages: the URL, mirror or path actually used)."""
    fetched = fetch_checkpoint(sources, mirrors, progress)
    return _read_verified(fetched.path, map_location), fetched.describe()


def _read_verified(path: str, map_location: MapLocation) -> Any:
    """Read ``path`` through ``open_verified``: the bytes loaded are the bytes whose hash
    was checked, even if another file is renamed over ``path`` meanwhile. Messages name
    ``path``, not the ``/proc/self/fd`` alias that was read."""
    with open_verified(path) as readable:
        return read_checkpoint_file(readable, map_location, mmap=True, name=path)


# ---- which format it is ----------------------------------------------------------------------
class CheckpointFormatError(ValueError):
    """A checkpoint's content is not what a model's weights should be; the message names
    the file and the key."""


def unwrap_state_dict(checkpoint: Any, name: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint, keys as stored: a dict of tensors, bare or
    under ``state_dict`` (training checkpoints), a ``module.`` (DistributedDataParallel)
    prefix dropped.

    Raises:
        CheckpointFormatError: no state dict of tensors inside; the message starts with ``name``.
    """
    state_dict = checkpoint
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
        state_dict = checkpoint['state_dict']
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CheckpointFormatError(
            f'{name} holds no state dict (got {type(checkpoint).__name__}); expected a dict '
            f'of tensors, bare or under "state_dict".')
    not_tensors = sorted(str(k) for k, v in state_dict.items()
                         if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointFormatError(
            f'{name}: these state-dict entries are not tensors: {not_tensors[:10]}'
            f'{" ..." if len(not_tensors) > 10 else ""}')
    return {_DDP_PREFIX.sub('', k): v for k, v in state_dict.items()}


def state_dict_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'timm' (``blocks.*``, ``patch_embed.proj.*``), 'open_clip' (``visual.*``,
    ``transformer.*``, ``token_embedding.*``) or 'mmclip' (also mmpretrain's keys)."""
    if is_timm_state_dict(state_dict):
        return 'timm'
    return 'open_clip' if is_open_clip_state_dict(state_dict) else 'mmclip'


def extract_state_dict(checkpoint: Any, name: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The mmclip-keyed state dict of a loaded checkpoint (``converted_state_dict`` of
    ``unwrap_state_dict``)."""
    return converted_state_dict(unwrap_state_dict(checkpoint, name), name)[0]


def converted_state_dict(state_dict: Dict[str, torch.Tensor],
                         name: str = 'checkpoint') -> Tuple[Dict[str, torch.Tensor], str]:
    """The one place that decides a state dict's format and converts it: (the
    mmclip-keyed state dict, the source format). timm or open_clip keys are renamed
    through their table (``convert.TIMM_TO_MMCLIP`` /
    ``convert_open_clip.OPEN_CLIP_TO_MMCLIP``); mmclip / mmpretrain keys are kept.

    Raises:
        CheckpointFormatError: no state dict of tensors inside, or timm / open_clip keys
            their table has no row for; the message starts with ``name``.
    """
    source_format = state_dict_format(state_dict)
    convert = {'timm': convert_timm_state_dict,
               'open_clip': convert_open_clip_state_dict}.get(source_format)
    if convert is not None:
        try:
            return convert(state_dict), source_format
        except (KeyError, ValueError) as err:
            raise CheckpointFormatError(f'{name}: {err.args[0]}') from None
    return state_dict, source_format


def _all_finite(value: torch.Tensor) -> bool:
    # A NaN or Inf anywhere makes the sum NaN or Inf, so a finite sum proves every value
    # finite at a tenth of isfinite's cost (no bool copy); a sum that overflowed from finite
    # values falls back to the exact check.
    return bool(torch.isfinite(value.sum())) or bool(torch.isfinite(value).all())


def check_weight_values(state_dict: Mapping[str, torch.Tensor],
                        model_state: Mapping[str, torch.Tensor], name: str,
                        allow_nonfinite: bool = False) -> None:
    """Refuse integer or boolean tensors where the model has floating-point weights, and
    NaN / Inf values unless ``allow_nonfinite``: either would load silently and break
    every prediction."""
    for key, value in state_dict.items():
        target = model_state.get(key)
        if target is None or not target.is_floating_point():
            continue
        if not value.is_floating_point():
            raise CheckpointFormatError(
                f'{name}: {key} is {value.dtype}, but the model\'s weight is {target.dtype}; '
                f'expected floating-point weights.')
        if not allow_nonfinite and not _all_finite(value):
            raise CheckpointFormatError(
                f'{name}: {key} holds NaN or Inf values. Refusing to load broken weights '
                f'(pass allow_nonfinite=True to load them anyway).')


def load_state_dict_from_source(sources: Sources,
                                map_location: MapLocation = 'cpu',
                                mirrors: Optional[Mapping[str, str]] = None,
                                progress: bool = True) -> Dict[str, torch.Tensor]:
    """Fetch, read and rename a checkpoint: mmclip keys -> tensors (no model check)."""
    checkpoint, name = read_source(sources, map_location, mirrors, progress)
    return extract_state_dict(checkpoint, name)


# ---- does it fit the model -----------------------------------------------------------------
def _adapt(model: nn.Module, state_dict: Dict[str, torch.Tensor], name: str, logger) -> None:
    """Let each submodule that adapts loaded weights (``adapt_state_dict``, e.g. the ViT
    resampling a position embedding of another patch grid) do so before the checks."""
    for prefix, module in model.named_modules():
        adapt = getattr(module, 'adapt_state_dict', None)
        if callable(adapt):
            try:
                adapt(state_dict, f'{prefix}.' if prefix else '', name, logger)
            except ValueError as err:
                raise StateDictMismatchError(str(err)) from None


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
                    progress: bool = True,
                    allow_nonfinite: bool = False) -> Any:
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
        allow_nonfinite: load weights holding NaN / Inf instead of refusing them.

    Returns:
        The loaded object (a state dict, or a dict with ``state_dict`` and ``meta``).

    Raises:
        StateDictMismatchError: with ``strict``, listing missing / unexpected keys and
            shape mismatches.
        ZeroShotError: with ``strict``, a classifier checkpoint for a zero-shot model, or
            a checkpoint with a text tower for a vision-only model.
        CheckpointFormatError: not a state dict of tensors, a non-float tensor for a
            float weight, or NaN / Inf values (see ``check_weight_values``).
        CheckpointDownloadError, UnsafeCheckpointError, CheckpointReadError: see
            ``fetch_checkpoint`` and ``read_checkpoint_file``.
    """
    return load_source_into(model, source, strict=strict, logger=logger,
                            allow_nonfinite=allow_nonfinite, map_location=map_location,
                            mirrors=mirrors, progress=progress).checkpoint


class Loaded(NamedTuple):
    """What ``load_source_into`` did: the checkpoint as stored, how messages named it, and
    the descriptions of the tensors ``drop_prefixes`` left out."""
    checkpoint: Any
    name: str
    dropped: List[str]


def load_source_into(model: nn.Module,
                     source: Sources,
                     *,
                     strict: bool = True,
                     logger: Union[str, logging.Logger, None] = None,
                     allow_nonfinite: bool = False,
                     drop_prefixes: Sequence[str] = (),
                     before_load: Optional[Callable[[Any, str], None]] = None,
                     **fetch: Any) -> Loaded:
    """The one load path (``get_model``, ``load_checkpoint``, the Runner's ``load_from`` and
    resume, ``LoadPretrainedHook``): fetch and read ``source`` (``fetch``: ``read_source``'s
    ``map_location``, ``mirrors``, ``progress``), let ``before_load(checkpoint, name)`` see
    it (the Runner's checks and hooks), convert its keys, load it with the checks of
    ``load_state_dict_into`` (the other arguments as there)."""
    checkpoint, name = read_source(source, **fetch)
    if before_load is not None:
        before_load(checkpoint, name)
    state_dict, source_format = converted_state_dict(unwrap_state_dict(checkpoint, name), name)
    if source_format != 'mmclip':
        print_log(f'{name}: {source_format} weights, renamed to mmclip\'s keys by its '
                  f'conversion table', logger=logger or 'current', level=logging.INFO)
    dropped = load_state_dict_into(model, state_dict, name, strict, drop_prefixes, logger,
                                   allow_nonfinite)
    return Loaded(checkpoint, name, dropped)


def _architecture_report(name: str, missing: List[str], unexpected: List[str],
                         shapes: List[str]) -> str:
    """One line for a checkpoint of another architecture (patch size, width, depth): the
    shapes that differ, the position embedding among them, counted once, before the
    lists of keys a strict load would otherwise print."""
    def some(items: List[str], sep: str) -> str:
        return sep.join(items[:3]) + (f'{sep}and {len(items) - 3} more' if len(items) > 3 else '')

    keys = ''.join(f', {len(items)} {title} ({some(items, ", ")})' for title, items in
                   (('missing key(s)', missing), ('unexpected key(s)', unexpected)) if items)
    return (f'{name} was saved from another architecture than the model: {len(shapes)} '
            f'tensor(s) differ in shape ({some(shapes, "; ")}){keys}. Use the config the '
            f'checkpoint was saved from.')


def _refuse_classifier_in_zero_shot(state_dict: Mapping[str, torch.Tensor],
                                    expected: Mapping[str, torch.Size], name: str) -> None:
    """A classifier file (image tower + linear head) for a zero-shot model is one mistake,
    not a list of every text-tower key it lacks."""
    if (any(k.startswith(TEXT_TOWER_PREFIX) for k in expected)
            and not any(k.startswith(TEXT_TOWER_PREFIX) for k in state_dict)
            and CLASSIFIER_HEAD_KEY in state_dict):
        classes = state_dict[CLASSIFIER_HEAD_KEY].shape[0]
        raise ZeroShotError(f'{name} is a classifier checkpoint ({classes} classes, no text '
                            f'tower), and the model is a zero-shot model, which needs CLIP\'s '
                            f'text tower too. Load it into its classifier config '
                            f'(mmclip.list_models("vit-*")), or give the zero-shot model an '
                            f'open_clip file of both towers (docs/zeroshot.md).')


def _refuse_text_tower(state_dict: Mapping[str, torch.Tensor],
                       expected: Mapping[str, torch.Size], name: str) -> None:
    """An open_clip file (both towers) for a vision-only model is one mistake, not a
    hundred unexpected keys. Non-strict loads (the image tower alone, to fine-tune) pass."""
    if (not any(k.startswith(TEXT_TOWER_PREFIX) for k in expected)
            and any(k.startswith(TEXT_TOWER_PREFIX) for k in state_dict)):
        raise ZeroShotError(f'{name} is a CLIP checkpoint with a text tower (open_clip '
                            f'format), and the model is a vision-only classifier. Load it into '
                            f'a zero-shot model: mmclip.list_models("*zeroshot*").')


def load_state_dict_into(model: nn.Module,
                         state_dict: Dict[str, torch.Tensor],
                         name: str = 'checkpoint',
                         strict: bool = True,
                         drop_prefixes: Sequence[str] = (),
                         logger: Union[str, logging.Logger, None] = None,
                         allow_nonfinite: bool = False) -> List[str]:
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
        allow_nonfinite: as in ``load_checkpoint``.

    Returns:
        The descriptions of what ``drop_prefixes`` left out. The model's
        ``weights_source`` is set to ``name``.
    """
    logger = logger or 'current'
    model = model.module if is_model_wrapper(model) else model
    state_dict = dict(state_dict)
    model_state = model.state_dict()
    check_weight_values(state_dict, model_state, name, allow_nonfinite)
    expected = {k: v.shape for k, v in model_state.items()}
    if strict:
        _refuse_text_tower(state_dict, expected, name)
        _refuse_classifier_in_zero_shot(state_dict, expected, name)
    prefixes = tuple(drop_prefixes)
    _adapt(model, state_dict, name, logger)
    kept: Tuple[List[str], ...] = ([], [], [])
    dropped: List[str] = []
    for found, kind in zip(_mismatches(state_dict, expected), kept):
        for item in found:
            (dropped if prefixes and item.startswith(prefixes) else kind).append(item)
    missing, unexpected, shapes = kept
    if strict and shapes:
        # The real cause first: a checkpoint of another architecture (patch size, width,
        # depth) is reported as that.
        raise StateDictMismatchError(_architecture_report(name, missing, unexpected, shapes))
    if strict and (missing or unexpected):
        raise StateDictMismatchError(_mismatch_report(name, missing, unexpected, shapes))
    if missing or unexpected or shapes:
        print_log(_mismatch_report(name, missing, unexpected, shapes) +
                  '\n(strict=False: the mis-shaped and unexpected tensors were skipped)',
                  logger=logger, level=logging.WARNING)
    model.load_state_dict({k: v for k, v in state_dict.items()
                           if k in expected and v.shape == expected[k]}, strict=False)
    model.weights_source = name
    print_log(f'Loaded checkpoint {name}', logger=logger, level=logging.INFO)
    return dropped
