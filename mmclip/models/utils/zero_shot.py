"""Class embeddings of a zero-shot head from prompts, built once per machine.

A class's embedding is the L2-normalised mean over the prompt templates of the
L2-normalised text embeddings of ``template.format(class_name)``, as in OpenAI's CLIP
notebook and open_clip's ``build_zero_shot_classifier``. The ImageNet head is 1000
classes x 80 templates = 80,000 prompts, so:

- prompts are sorted by token length and run in batches, each cut to its longest prompt
  (exact under the causal mask, see ``CLIPTextTransformer``);
- the result is cached (``mmclip.checkpoint.head_cache``) under a key, a SHA-256 of the
  text tower's weights, the class names and the templates (``cache_key``).
"""
import hashlib
import json
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from torch import nn

from mmclip.checkpoint.head_cache import head_path, read_head, write_head
from mmclip.datasets.zeroshot_prompts import IMAGENET_CLIP_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
from mmclip.utils.errors import ZeroShotError

from .tokenizer import Tokenizer, tokenize

CLASS_LISTS = {'imagenet': IMAGENET_CLIP_CLASSNAMES}
TEMPLATE_LISTS = {'openai_imagenet': OPENAI_IMAGENET_TEMPLATES}
BATCH_SIZE = 256  # prompts per text-tower forward
_CACHE_VERSION = 'mmclip-zeroshot-head-v2'  # v2: the key is stored in the file


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


def _embed_width(text_tower: nn.Module) -> int:
    """D of the text tower's embeddings [N, D] (its projection's output width)."""
    return text_tower.projection.shape[-1]


def cached_class_embeddings(text_tower: nn.Module, classes: Sequence[str],
                            templates: Sequence[str],
                            tokenizer: Tokenizer = tokenize) -> torch.Tensor:
    """``build_class_embeddings``, read from the cache (``mmclip.checkpoint.head_cache``)
    when it was built before."""
    name = getattr(tokenizer, 'name', 'clip-bpe')
    key = cache_key(text_tower, classes, templates, None if name == 'clip-bpe' else name)
    device = next(text_tower.parameters()).device
    emb = read_head(key, len(classes), _embed_width(text_tower))
    if emb is not None:
        return emb.to(device)
    num = len(classes) * len(templates)
    print_log(f'Building the zero-shot head: {len(classes)} classes x {len(templates)} '
              f'templates = {num} prompts (cached in {head_path(key)}).', logger='current')
    emb = build_class_embeddings(text_tower, classes, templates, progress=True,
                                 tokenizer=tokenizer)
    write_head(key, emb)
    return emb
