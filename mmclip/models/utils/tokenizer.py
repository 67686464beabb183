"""Tokenizers of the zero-shot text towers.

- CLIP's byte-pair encoding (every CLIP-architecture tower: OpenAI, LAION, DFN, MetaCLIP),
  from open_clip, which ships its vocabulary file. Texts are cleaned as open_clip does (ftfy
  text repair, HTML entities unescaped twice, whitespace collapsed, lower-cased), encoded,
  wrapped in start- and end-of-text tokens and zero-padded to the context length; a text
  that does not fit is cut, keeping end-of-text as its last token.
- Hugging Face tokenizers (SigLIP's sentencepiece vocabulary, SigLIP 2's Gemma one), run as
  open_clip's ``HFTokenizer`` runs them (its cleaning, padding to the context length,
  truncation), so the ids are open_clip's. Their files are read from a local directory,
  never fetched while a model is built or run: the directory given in the config
  (``path``), else the folder that ``MMCLIP_MIRRORS`` maps the repository's Hugging Face
  URL to (``https://huggingface.co/<name>/resolve/main/``), else mmclip's tokenizer cache
  (``<torch hub dir>/mmclip/tokenizers/<name>``), which ``fetch_hf_tokenizer`` fills from
  the hub once (huggingface_hub checks each file against the hub's SHA-256).

open_clip_torch is the ``multimodal`` extra; the Hugging Face tokenizers also need
``transformers`` and ``sentencepiece``: ``pip install "mmclip[siglip]"``.
"""
import os.path as osp
from functools import lru_cache
from typing import Callable, Optional, Sequence

import torch

CONTEXT_LENGTH = 77
HF_URL = 'https://huggingface.co/{name}/resolve/main/'
# What AutoTokenizer reads; a repository holds some of them (tokenizer.json for fast
# tokenizers, spiece.model / tokenizer.model for sentencepiece ones).
HF_TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
                      'spiece.model', 'tokenizer.model')
Tokenizer = Callable[[Sequence[str]], torch.Tensor]


class TokenizerError(ValueError):
    """A tokenizer cannot be loaded; the message says what to install or where to put
    which files."""


@lru_cache(maxsize=1)
def _tokenizer():
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError:
        raise ImportError('CLIP text prompts need the open_clip_torch package (its BPE '
                          'vocabulary): pip install "mmclip[multimodal]"') from None
    return SimpleTokenizer(context_length=CONTEXT_LENGTH)


def tokenize(texts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Texts -> token ids, int64 [len(texts), context_length], as ``open_clip.tokenize``."""
    if isinstance(texts, str):
        raise TypeError(f'tokenize takes a list of texts; got the single string {texts!r}.')
    return _tokenizer()(list(texts), context_length=context_length)


def tokenizer_cache_dir(name: str) -> str:
    """mmclip's folder for the files of the Hugging Face tokenizer ``name``."""
    return osp.join(torch.hub.get_dir(), 'mmclip', 'tokenizers', name.replace('/', '--'))


def _has_tokenizer_files(folder: str) -> bool:
    return osp.isdir(folder) and any(
        osp.isfile(osp.join(folder, f)) for f in ('tokenizer.json', 'spiece.model',
                                                  'tokenizer.model'))


def resolve_hf_tokenizer_dir(name: str, path: Optional[str] = None) -> str:
    """The local folder holding the files of tokenizer ``name`` (see the module doc)."""
    # Imported here: mmclip.checkpoint imports the zero-shot utilities, which import this.
    from mmclip.checkpoint.download import is_url, resolve_mirror
    if path is not None:
        if not _has_tokenizer_files(path):
            raise TokenizerError(f'Tokenizer folder {path} holds none of tokenizer.json, '
                                 f'spiece.model, tokenizer.model (the files of {name}).')
        return path
    mirrored = resolve_mirror(HF_URL.format(name=name))
    candidates = [mirrored] if not is_url(mirrored) else []
    candidates.append(tokenizer_cache_dir(name))
    for folder in candidates:
        if _has_tokenizer_files(folder):
            return folder
    raise TokenizerError(
        f'The tokenizer files of {name} are not here: looked in {candidates}. Put its '
        f'{", ".join(HF_TOKENIZER_FILES[:3])} (and spiece.model if it has one) from '
        f'{HF_URL.format(name=name)} into {tokenizer_cache_dir(name)}, or fetch them once with '
        f'mmclip.models.utils.tokenizer.fetch_hf_tokenizer({name!r}).')


def fetch_hf_tokenizer(name: str) -> str:
    """Download the tokenizer files of Hugging Face repository ``name`` into mmclip's cache
    (once; huggingface_hub verifies each file against the hub's SHA-256 and honours
    ``HF_HUB_OFFLINE``) and return the folder."""
    from huggingface_hub import snapshot_download
    return snapshot_download(name, allow_patterns=list(HF_TOKENIZER_FILES),
                             local_dir=tokenizer_cache_dir(name))


class CLIPTokenizer:
    """CLIP's BPE tokenizer (``tokenize``) as a ``Tokenizer``."""

    name = 'clip-bpe'

    def __init__(self, context_length: int = CONTEXT_LENGTH) -> None:
        self.context_length = context_length

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return tokenize(texts, self.context_length)


class HFTokenizer:
    """A Hugging Face tokenizer run as open_clip's ``HFTokenizer`` (same cleaning, padding
    and truncation, so the same ids), loaded on first use from a local folder.

    Args:
        name: the Hugging Face repository open_clip names (its model config's
            ``hf_tokenizer_name``), e.g. ``'timm/ViT-B-16-SigLIP'``.
        context_length: the text tower's positions (SigLIP: 64, or 16 for SO400M/14-224).
        clean: open_clip's cleaning, ``'canonicalize'`` for SigLIP (lower case, punctuation
            removed), ``'lower'`` or ``'whitespace'``.
        path: a local folder with the files; default: see ``resolve_hf_tokenizer_dir``.
    """

    def __init__(self, name: str, context_length: int, clean: str = 'whitespace',
                 path: Optional[str] = None) -> None:
        self.name, self.context_length, self.clean, self.path = name, context_length, clean, path
        self._tokenizer = None

    def _load(self):
        try:
            import transformers  # noqa: F401
            from open_clip.tokenizer import HFTokenizer as OpenClipHFTokenizer
        except ImportError:
            raise TokenizerError(f'The text prompts of this model need the Hugging Face '
                                 f'tokenizer {self.name}: pip install "mmclip[siglip]" '
                                 f'(open_clip_torch, transformers, sentencepiece).') from None
        folder = resolve_hf_tokenizer_dir(self.name, self.path)
        try:
            return OpenClipHFTokenizer(folder, context_length=self.context_length,
                                       clean=self.clean)
        except (OSError, ValueError) as err:
            raise TokenizerError(f'Cannot load the tokenizer {self.name} from {folder}: '
                                 f'{err}'.splitlines()[0]) from None

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError(f'A tokenizer takes a list of texts; got the single string '
                            f'{texts!r}.')
        if self._tokenizer is None:
            self._tokenizer = self._load()
        return self._tokenizer(list(texts), context_length=self.context_length).long()


TOKENIZERS = {'CLIPTokenizer': CLIPTokenizer, 'HFTokenizer': HFTokenizer}


def build_tokenizer(cfg: Optional[dict] = None) -> Tokenizer:
    """``None`` (CLIP's BPE), ``dict(type='CLIPTokenizer')`` or ``dict(type='HFTokenizer',
    name=..., context_length=..., clean=...)`` -> the tokenizer (files load on first use)."""
    cfg = dict(cfg or dict(type='CLIPTokenizer'))
    kind = cfg.pop('type', None)
    if kind not in TOKENIZERS:
        raise TokenizerError(f'tokenizer type must be one of {sorted(TOKENIZERS)}; got {kind!r}.')
    try:
        return TOKENIZERS[kind](**cfg)
    except TypeError as err:
        raise TokenizerError(f'tokenizer {kind}: {err}') from None

