"""The ViT-L/14 and ViT-H/14 zoo entries as tests/data/reference/large-models-facts.md
states them (the reference the tests check the configs, metafile and README against)."""
from pathlib import Path
from typing import Dict, NamedTuple

FACTS = Path(__file__).resolve().parent / 'data' / 'reference' / 'large-models-facts.md'


class LargeModel(NamedTuple):
    timm_tag: str
    size: int
    crop_pct: float
    crop_mode: str
    half_normalised: bool  # mean = std = 0.5 instead of CLIP's
    top1: float
    top5: float


def large_models() -> Dict[str, LargeModel]:
    """zoo name -> its facts, in the table's order."""
    rows = {}
    for line in FACTS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 8 and cells[0].startswith(('vit-large', 'vit-huge')):
            name, tag, size, pct, mode, norm, top1, top5 = cells
            rows[name] = LargeModel(tag, int(size), float(pct), mode, norm == '0.5',
                                    float(top1), float(top5))
    return rows
