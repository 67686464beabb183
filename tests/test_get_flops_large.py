"""get_flops.py on the ViT-L/14 and ViT-H/14 configs: FLOPs within 0.5% of mmengine's
counter on timm's model, Params equal to it, and both equal to the metafile.

At 224 px only: one get_flops.py run costs a build plus two traced forwards of the
real model (about a minute for ViT-H/14 on 2 cores). The 336 px entries were counted
the same way when they were added (equal to timm's count, as at 224 px).
"""
import re
from pathlib import Path

import pytest
import torch
from large_models import large_models
from mmengine.analysis import FlopAnalyzer
from test_get_flops import run_get_flops

from mmclip.apis import get_model_info

timm = pytest.importorskip('timm')
pytestmark = pytest.mark.slow  # full-size L/14 and H/14 (CI runs them too)
ROOT = Path(__file__).resolve().parents[1]
CASES = [('vit-large-p14_clip-openai-pre_3rdparty_in1k', 'vit_large_patch14_clip_224'),
         ('vit-huge-p14_clip-laion2b-pre_3rdparty_in1k', 'vit_huge_patch14_clip_224')]


def timm_count(name: str) -> tuple:
    """(params, FLOPs) of timm's model by mmengine's counter; the weights are left
    uninitialised (counting does not read them)."""
    with torch.device('meta'):
        model = timm.create_model(name, pretrained=False)
    model = model.to_empty(device='cpu').eval()
    size = model.pretrained_cfg['input_size'][-1]
    with torch.no_grad():
        flops = FlopAnalyzer(model, (torch.zeros(1, 3, size, size), )).total()
    return sum(p.numel() for p in model.parameters()), flops


@pytest.mark.parametrize('name,timm_name', CASES)
def test_get_flops_agrees_with_timm_and_the_metafile(name, timm_name, capsys):
    out = run_get_flops(ROOT / 'configs' / 'clip' / f'{name}.py', capsys)
    flops_g = re.search(r'^Flops: ([\d.]+) G$', out, re.M).group(1)
    params_m = re.search(r'^Params: ([\d.]+) M$', out, re.M).group(1)
    timm_params, timm_flops = timm_count(timm_name)
    assert abs(float(flops_g) * 1e9 - timm_flops) / timm_flops <= 0.005
    assert params_m == f'{timm_params / 1e6:.2f}'
    # Every 224 px entry of this architecture lists that count.
    arch = name.split('_')[0]
    for other, row in large_models().items():
        if other.startswith(arch) and row.size == 224:
            meta = get_model_info(other).metadata['Metadata']
            assert f"{meta['FLOPs'] / 1e9:.2f}" == flops_g
            assert meta['Parameters'] == timm_params
