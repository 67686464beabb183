"""Class embeddings of a zero-shot head from prompts, built once per machine.

A class's embedding is the L2-normalised mean over the prompt templates of the
L2-normalised text embeddings of ``template.format(class_name)``, as in OpenAI's CLIP
notebook and open_clip's ``build_zero_shot_classifier``. The ImageNet head is 1000
classes x 80 templates = 80,000 prompts, so:

- prompts are sorted by token length and run in batches, each cut to its longest prompt
  (exact under the causal mask, see ``CLIPTextTransformer``);
- the result is cached in ``<torch hub dir>/mmclip/zeroshot_heads/<key>.safetensors``,
  the key a SHA-256 of the text tower's weights, the class names and the templates.
  Files are written atomically (``mmclip.utils.atomic_file``) with the key in their
  metadata, and read with safetensors (no pickle). The cache folder may be shared or
  writable by others, so a file is data to check, never trusted: only a regular file is
  read (a symbolic link is not followed), and one whose stored key differs, or that does
  not hold a finite float32 [K, D] tensor with unit-norm rows, is ignored with a warning
  and rebuilt.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import stat
import struct
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from torch import nn

from mmclip.datasets.zeroshot_prompts import IMAGENET_CLIP_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
from mmclip.utils.atomic_file import atomic_write
from mmclip.utils.errors import ZeroShotError

from .tokenizer import Tokenizer, tokenize

CLASS_LISTS = {'imagenet': IMAGENET_CLIP_CLASSNAMES}
TEMPLATE_LISTS = {'openai_imagenet': OPENAI_IMAGENET_TEMPLATES}
BATCH_SIZE = 256  # prompts per text-tower forward
_CACHE_VERSION = 'mmclip-zeroshot-head-v2'  # v2: the key is stored in the file
_UNIT_NORM_TOLERANCE = 1e-3
_HEADER_ALLOWANCE = 1 << 16  # bytes of safetensors header a cache file may add


def _resolve(value, presets: dict, what: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        if value not in presets:
            raise ZeroShotError(f'{what} must be a list of strings or one of {sorted(presets)}; '
                                f'got the string {value!r} (for a list, pass ["...", "..."]).')
        return tuple(presets[value])
    if not isinstance(value, (list, tuple)) or not value:
        raise ZeroShotError(f'{what} must be a non-empty list of strings; got {value!r}.')
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ZeroShotError(f'{what} must be non-empty strings; got {bad[:5]}.')
    return tuple(value)


def resolve_prompts(classes, templates) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Validated (class names, templates); presets: classes 'imagenet', templates
    'openai_imagenet'. Each template must hold one ``{}`` for the class name."""
    classes = _resolve(classes, CLASS_LISTS, 'classes')
    templates = _resolve(templates, TEMPLATE_LISTS, 'templates')
    for template in templates:
        try:
            ok = template.format('\0').count('\0') == 1
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ZeroShotError(f'Template {template!r} must hold exactly one {{}} for the class '
                                f'name, e.g. "a photo of a {{}}.".')
    return classes, templates


@torch.no_grad()
def encode_texts(text_tower: nn.Module, texts: Sequence[str],
                 batch_size: int = BATCH_SIZE, progress: bool = False,
                 tokenizer: Tokenizer = tokenize) -> torch.Tensor:
    """Texts -> L2-normalised embeddings [N, D], in input order.

    Texts are sorted by token count so that each batch of a causal tower is cut to nearly
    its own length (the order changes nothing for the others).
    """
    device = next(text_tower.parameters()).device
    tokens = tokenizer(texts)
    order = (tokens.argmax(dim=-1)).argsort(stable=True)
    out = None
    bar = ProgressBar(len(texts)) if progress and len(texts) > batch_size else None
    for start in range(0, len(texts), batch_size):
        index = order[start:start + batch_size]
        emb = F.normalize(text_tower(tokens[index].to(device)).float(), dim=-1)
        if out is None:
            out = emb.new_empty(len(texts), emb.shape[1])
        out[index.to(device)] = emb
        if bar is not None:
            bar.update(len(index))
    if bar is not None:
        bar.file.write('\n')
    return out


def build_class_embeddings(text_tower: nn.Module, classes: Sequence[str],
                           templates: Sequence[str], progress: bool = False,
                           tokenizer: Tokenizer = tokenize) -> torch.Tensor:
    """The zero-shot head's class embeddings, float32 [K, D], rows L2-normalised."""
    texts = [template.format(name) for name in classes for template in templates]
    emb = encode_texts(text_tower, texts, progress=progress, tokenizer=tokenizer)
    return F.normalize(emb.reshape(len(classes), len(templates), -1).mean(dim=1), dim=-1)


def cache_key(text_tower: nn.Module, classes: Sequence[str], templates: Sequence[str],
              tokenizer_name: Optional[str] = None) -> str:
    """SHA-256 of the text tower's tensors (names, dtypes, shapes, bytes) and the prompts;
    and of the tokenizer's name unless it is CLIP's BPE (None: the keys of CLIP towers stay
    what they were)."""
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    if tokenizer_name is not None:
        digest.update(f'tokenizer|{tokenizer_name}'.encode())
    for name, tensor in sorted(text_tower.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}'.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    digest.update(json.dumps([list(classes), list(templates)]).encode())
    return digest.hexdigest()


def prompt_digest(classes: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """SHA-256 of the prompts as a uint8 tensor [32]: saved beside a built head, so that a
    head is only ever loaded for the classes and templates it was built from."""
    digest = hashlib.sha256(json.dumps([list(classes), list(templates)]).encode()).digest()
    return torch.frombuffer(bytearray(digest), dtype=torch.uint8)


def cache_path(key: str) -> str:
    return osp.join(torch.hub.get_dir(), 'mmclip', 'zeroshot_heads', f'{key}.safetensors')


def _embed_width(text_tower: nn.Module) -> int:
    """D of the text tower's embeddings [N, D] (its projection's output width)."""
    return text_tower.projection.shape[-1]


def _read_regular_file(path: str, max_size: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_size`` bytes; never
    through a symbolic link (``O_NOFOLLOW``: someone else's file behind the cache name)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO would block
    except OSError as err:
        raise OSError('it is a symbolic link' if osp.islink(path) else str(err)) from None
    with os.fdopen(fd, 'rb') as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError('it is not a regular file')
        if info.st_size > max_size:
            raise OSError(f'it is {info.st_size} bytes, more than the {max_size} a head of '
                          f'this shape takes')
        return f.read()


def _stored_key(data: bytes) -> Optional[str]:
    """The ``key`` of a safetensors file's metadata (its JSON header), or None."""
    (size, ) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + size]) if size <= len(data) - 8 else None
    metadata = header.get('__metadata__') if isinstance(header, dict) else None
    return metadata.get('key') if isinstance(metadata, dict) else None


def _cache_problem(emb: torch.Tensor, num_classes: int, width: int) -> Optional[str]:
    """Why ``emb`` is not a head ``build_class_embeddings`` makes, or None."""
    if emb is None or emb.dtype != torch.float32 or emb.shape != (num_classes, width):
        got = 'none' if emb is None else f'{emb.dtype} {list(emb.shape)}'
        return f'"class_embeddings" is {got}, not float32 [{num_classes}, {width}]'
    if not bool(emb.isfinite().all()):
        return 'it holds NaN or Inf'
    worst = float((emb.norm(dim=1) - 1).abs().max())
    if worst > _UNIT_NORM_TOLERANCE:
        return f'its rows are not unit-norm (off by up to {worst:.3g})'
    return None


def _read_cached(path: str, key: str, num_classes: int, width: int) -> Optional[torch.Tensor]:
    """The cached [K, D] tensor, or None (with one warning) when the file is not one this
    module wrote for ``key``."""
    from safetensors import SafetensorError
    from safetensors.torch import load
    emb = None
    try:
        data = _read_regular_file(path, num_classes * width * 4 + _HEADER_ALLOWANCE)
        stored = _stored_key(data)
        if stored != key:
            why = 'it holds no key' if stored is None else f'it was stored for the key {stored}'
        else:
            emb = load(data).get('class_embeddings')
            why = _cache_problem(emb, num_classes, width)
    except (SafetensorError, OSError, ValueError, struct.error) as err:
        why = str(err) or type(err).__name__
    if why is None:
        return emb
    print_log(f'Ignoring the zero-shot head cache {path} ({why}); building it again.',
              logger='current', level=logging.WARNING)
    return None


def cached_class_embeddings(text_tower: nn.Module, classes: Sequence[str],
                            templates: Sequence[str],
                            tokenizer: Tokenizer = tokenize) -> torch.Tensor:
    """``build_class_embeddings``, read from the cache when it was built before."""
    name = getattr(tokenizer, 'name', 'clip-bpe')
    key = cache_key(text_tower, classes, templates, None if name == 'clip-bpe' else name)
    path = cache_path(key)
    device = next(text_tower.parameters()).device
    if osp.lexists(path):
        emb = _read_cached(path, key, len(classes), _embed_width(text_tower))
        if emb is not None:
            return emb.to(device)
    num = len(classes) * len(templates)
    print_log(f'Building the zero-shot head: {len(classes)} classes x {len(templates)} '
              f'templates = {num} prompts (cached in {path}).', logger='current')
    emb = build_class_embeddings(text_tower, classes, templates, progress=True,
                                 tokenizer=tokenizer)
    from safetensors.torch import save
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        with atomic_write(path) as f:  # replaces a link at ``path``, never writes through it
            f.write(save({'class_embeddings': emb.detach().cpu().contiguous()},
                         metadata={'key': key}))
    except OSError as err:  # a read-only cache costs time, not correctness
        print_log(f'Could not cache the zero-shot head in {path}: {err}', logger='current',
                  level=logging.WARNING)
    return emb
