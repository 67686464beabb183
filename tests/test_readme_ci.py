"""README's two leading commands stay runnable: CI runs exactly the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(block: str) -> list:
    return [line for line in block.splitlines() if line and not line.startswith('#')]


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r'```bash\n(.*?)```', (ROOT / 'README.md').read_text(), re.S)
    demo, tests = commands(blocks[0]), commands(blocks[1])
    assert len(demo) == 1 and 'demo/image_demo.py' in demo[0] and 'pip install' in demo[0]
    assert len(tests) == 1 and 'pytest' in tests[0] and 'pip install' in tests[0]
    ci = commands((ROOT / '.ci' / 'run').read_text())
    assert tests[0] in ci
    demo_files = re.findall(r'demo/\S+\.(?:jpg|png)', demo[0])
    assert demo_files and all((ROOT / f).is_file() for f in demo_files)
