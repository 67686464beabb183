"""The package's layers import downward only, and no module imports itself back through
others: read from the source (every import, also those inside functions)."""
import ast
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).resolve().parents[1]
# Lower numbers are lower layers; a package imports only from lower ones (and itself).
LAYERS = {'utils': 0, 'version': 0, 'registry': 1, 'structures': 2, 'datasets': 3,
          'evaluation': 3, 'checkpoint': 4, 'models': 5, 'engine': 6, 'deployment': 6,
          'apis': 7, 'cli': 8}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: Path, name: str, known: Set[str]) -> Set[str]:
    """The mmclip modules ``path`` imports (a package's ``from . import x`` counts as x)."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([node.module] if node.module else []))
            submodules = [f'{base}.{alias.name}' for alias in node.names]
            targets = submodules if node.module is None else [base] + submodules
        else:
            continue
        found.update(t for t in targets if t in known)
    # A package a module lives in is initialised before the module anyway: not an edge.
    return {t for t in found if not (name + '.').startswith(t + '.')}


def graph() -> Dict[str, Set[str]]:
    paths = {module_name(p): p for p in (ROOT / 'mmclip').rglob('*.py')}
    return {name: imports_of(path, name, set(paths)) for name, path in paths.items()}


def layer(module: str) -> str:
    return module.split('.')[1] if module.count('.') else ''


def test_every_package_has_a_layer():
    packages = {layer(m) for m in graph()} - {''}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_layers_import_only_downward():
    upward = sorted(f'{m} -> {d}' for m, deps in graph().items() for d in deps
                    if layer(m) and layer(d) != layer(m)
                    and LAYERS[layer(d)] >= LAYERS[layer(m)])
    assert not upward, '\n'.join(upward)


def test_no_import_circle():
    edges = graph()
    state: Dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list) -> None:
        state[module] = 1
        for dep in sorted(edges[module]):
            if state.get(dep) == 1:
                raise AssertionError(' -> '.join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_registries_find_every_type_after_import_mmclip_alone():
    """``locations`` import the module that registers a type when a config asks for it:
    the exported-model classifiers too, without ``import mmclip.deployment``."""
    import subprocess
    import sys
    probe = ('import sys, mmclip\n'
             'from mmengine.registry import DefaultScope\n'
             'from mmclip.registry import MODELS\n'
             'assert "mmclip.deployment" not in sys.modules\n'
             'with DefaultScope.overwrite_default_scope("mmclip"):\n'
             '    print(MODELS.get("OnnxRuntimeClassifier").__module__)\n')
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'mmclip.deployment.onnxruntime_classifier'
