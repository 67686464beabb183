"""CLIP's byte-pair-encoding tokenizer, from open_clip (which ships its vocabulary file).

Texts are cleaned as open_clip does (ftfy text repair, HTML entities unescaped twice,
whitespace collapsed, lower-cased), encoded, wrapped in start- and end-of-text tokens and
zero-padded to the context length; a text that does not fit is cut, keeping end-of-text
as its last token. open_clip_torch is an optional extra: ``pip install "mmclip[multimodal]"``.
"""
from functools import lru_cache
from typing import Sequence

import torch

CONTEXT_LENGTH = 77


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
