"""ImageNet-1k class names, from torchvision's maintained weight metadata (not hand-typed)."""
from functools import lru_cache
from typing import Tuple


@lru_cache(maxsize=None)
def imagenet_categories() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (``'tench'``, ...).

    Taken from the public ``meta['categories']`` of a torchvision ImageNet weights enum:
    the index order is the standard one (sorted WordNet ids), which the published CLIP
    heads use. torchvision.models is imported here, on first use, not with mmclip.
    """
    from torchvision.models import ResNet18_Weights
    categories = tuple(ResNet18_Weights.IMAGENET1K_V1.meta['categories'])
    if len(categories) != 1000:
        raise RuntimeError(f'torchvision returned {len(categories)} ImageNet categories, '
                           f'expected 1000.')
    return categories
