"""ImageNet-1k class names, from torchvision's maintained weight metadata (not hand-typed)."""
import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple


def _read_torchvision_meta() -> Optional[Tuple[str, ...]]:
    """``_IMAGENET_CATEGORIES`` parsed from torchvision's ``models/_meta.py`` source.

    Importing torchvision (any of it: its ``__init__`` imports models, datasets, ops)
    costs about 0.8 s of start-up for a list of strings; reading the literal costs 30 ms.
    None when that private file is not laid out so (the caller then imports).
    """
    spec = importlib.util.find_spec('torchvision')  # finds it without importing it
    if spec is None or spec.origin is None:
        return None
    meta = Path(spec.origin).parent / 'models' / '_meta.py'
    try:
        tree = ast.parse(meta.read_text(encoding='utf-8'))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], 'id', None) == '_IMAGENET_CATEGORIES'):
            return tuple(ast.literal_eval(node.value))
    return None


@lru_cache(maxsize=None)
def imagenet_categories() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (``'tench'``, ...).

    Taken from the public ``meta['categories']`` of torchvision's ImageNet weights: the
    index order is the standard one (sorted WordNet ids), which the published CLIP heads
    use. Read from torchvision's source without importing it when possible.
    """
    categories = _read_torchvision_meta()
    if categories is None:
        from torchvision.models import ResNet18_Weights
        categories = tuple(ResNet18_Weights.IMAGENET1K_V1.meta['categories'])
    if len(categories) != 1000:
        raise RuntimeError(f'torchvision returned {len(categories)} ImageNet categories, '
                           f'expected 1000.')
    return categories
