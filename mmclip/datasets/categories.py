"""ImageNet-1k class names, shipped as a data file (``meta/imagenet_categories.txt``)."""
from functools import lru_cache
from pathlib import Path
from typing import Tuple

CATEGORIES_FILE = Path(__file__).resolve().parent / 'meta' / 'imagenet_categories.txt'


@lru_cache(maxsize=None)
def imagenet_categories() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (``'tench'``, ...): the
    public ``meta['categories']`` of torchvision's ImageNet weights, whose order is the
    standard one (sorted WordNet ids) that the published CLIP heads use
    (``tests/test_startup.py`` compares the file with torchvision's list)."""
    categories = tuple(CATEGORIES_FILE.read_text(encoding='utf-8').splitlines())
    if len(categories) != 1000:
        raise RuntimeError(f'{CATEGORIES_FILE} holds {len(categories)} names, expected 1000.')
    return categories
