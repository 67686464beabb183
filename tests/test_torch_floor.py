"""The code uses no torch / torchvision API newer than the floor setup.py declares.

``tests/data/torch_floor_api.txt`` lists every ``torch.*`` / ``torchvision.*`` name the
code refers to, each checked to exist under the floor release. A new name fails this test
until it is checked there: in an environment with the floor versions installed, run

    PYTHONPATH=. python tests/test_torch_floor.py --write

which resolves every name the code uses and rewrites the list (failing on any that the
floor release lacks).
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API_LIST = ROOT / 'tests' / 'data' / 'torch_floor_api.txt'
SOURCES = ('mmclip', 'tools', 'demo')
_DOTTED = re.compile(r'\b((?:torch|torchvision)(?:\.[A-Za-z_]\w*)+)')
_FROM_IMPORT = re.compile(
    r'^\s*from\s+((?:torch|torchvision)[\w.]*)\s+import\s+(?:\(([^)]*)\)|([^\n]+))', re.M)


def declared_floor() -> str:
    match = re.search(r"'torch>=([\d.]+)'", (ROOT / 'setup.py').read_text())
    return match.group(1)


def used_names() -> set:
    """Dotted names in the code: ``torch.nn.functional.interpolate``, and
    ``from torch.nn import functional`` as ``torch.nn.functional``."""
    names = set()
    for folder in SOURCES:
        for path in (ROOT / folder).rglob('*.py'):
            text = re.sub(r'#.*', '', path.read_text())
            names.update(m.rstrip('.') for m in _DOTTED.findall(text))
            for module, grouped, single in _FROM_IMPORT.findall(text):
                items = (grouped or single).replace('\\', '').split(',')
                names.update(f'{module}.{item.split()[0]}' for item in items if item.split())
    return names


def resolves(name: str) -> bool:
    import importlib
    parts = name.split('.')
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_torch_name_used_is_checked_against_the_floor():
    listed = set(API_LIST.read_text().split())
    unchecked = sorted(used_names() - listed)
    assert not unchecked, (
        f'{unchecked} are not known to exist in torch {declared_floor()} (the floor setup.py '
        f'declares). Check them there and rerun `python tests/test_torch_floor.py --write` '
        f'under the floor versions.')


if __name__ == '__main__' and sys.argv[1:] == ['--write']:
    import torch
    assert torch.__version__.startswith(declared_floor()), (
        f'run this under torch {declared_floor()}, not {torch.__version__}')
    names = sorted(used_names())
    missing = [n for n in names if not resolves(n)]
    if missing:
        sys.exit(f'Not in torch {torch.__version__}: {missing}')
    API_LIST.write_text(f'# torch {torch.__version__}: every name below resolves\n' +
                        '\n'.join(names) + '\n')
    print(f'{len(names)} names checked under torch {torch.__version__}')
