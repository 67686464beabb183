"""get_flops.py reproduces the seed table: Params exactly, FLOPs within 0.5%."""
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_README = ROOT / 'tests' / 'data' / 'reference' / 'seed-clip-README.md'


def seed_rows() -> dict:
    """config file name -> (Params M, FLOPs G), parsed from the seed README's table."""
    rows = {}
    for line in SEED_README.read_text().splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 8 and cells[0].startswith('`vit-base'):
            config = re.search(r'\((.+?\.py)\)', cells[6]).group(1)
            rows[config] = (cells[2], float(cells[3]))
    return rows


ROWS = seed_rows() if SEED_README.exists() else {}


def run_get_flops(config: Path, capsys) -> str:
    argv = sys.argv
    sys.argv = ['get_flops.py', str(config)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / 'tools/analysis_tools/get_flops.py'), run_name='__main__')
    finally:
        sys.argv = argv
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.skipif(not ROWS, reason=f'seed README not found at {SEED_README}')
@pytest.mark.parametrize('config', sorted(ROWS))
def test_params_and_flops_match_seed_table(config, capsys):
    params, flops = ROWS[config]
    out = run_get_flops(ROOT / 'configs' / 'clip' / config, capsys)
    counted = float(re.search(r'^Flops: ([\d.]+) G$', out, re.M).group(1))
    assert abs(counted - flops) / flops <= 0.005
    # The table counts a 224 px position embedding at every resolution; the tool prints
    # that figure on its own line beside the model's real count.
    real = re.search(r'^Params: ([\d.]+) M$', out, re.M).group(1)
    at_224 = re.search(r'^Params with a 224 px position embedding .*: ([\d.]+) M$', out, re.M)
    size = int(re.search(r'-(\d+)px', config).group(1)) if 'px' in config else 224
    assert (at_224 is None) == (size == 224)
    assert (at_224.group(1) if at_224 else real) == params

def test_seed_table_has_five_configs():
    assert len(ROWS) == 5
