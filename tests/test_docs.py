"""Every fenced ``bash`` / ``shell`` / ``sh`` / ``python`` block of README.md and docs/*.md
runs, as written, on stand-ins (issue 22): a doc that drifts from the code fails here.

How a block runs. Each doc gets a fresh *stand-in checkout*: a copy of the repository
whose configs (each rewritten as its resolved self) keep everything but the towers' sizes
(2 layers, 64 wide, image and text; same patch and input sizes, heads, pipelines,
schedules; data loaded in the main process), whose model index and configs
name checkpoint URLs served from 127.0.0.1 (tiny checkpoints built from those configs on
first request; the hash in a file name is dropped, as a stand-in cannot match it), and
which holds a small ImageNet-layout ``data/imagenet`` (layout A, from the test photos).
The doc's blocks then run in order in that checkout (outputs of one block, e.g. an
exported ``.onnx``, are there for the next), with PYTHONPATH on it and the test's own
empty caches: shell blocks with ``bash -e -o pipefail``, python blocks as a script.
Other fences (``text``, none) are output samples and layouts, never run.

Rewritten for every block: checkpoint URLs (download.openmmlab.com, huggingface.co) ->
their local stand-ins; the placeholders ``CONFIG``, ``CHECKPOINT`` / ``CHECKPOINT.pth`` /
``CKPT`` (a tiny ViT-B/32 config and checkpoint) and ``DIR`` (the test photos); a
``pip install ... &&`` prefix is dropped and a ``pip install`` line is not run (the test
environment is the installed one).

Marking a block: an HTML comment (invisible on GitHub) on the line(s) right above the
fence, several may be stacked:

    <!-- docs-test: skip REASON -->            not run (a python block is still compiled);
                                               REASON is required (a GPU, real weights, ...)
    <!-- docs-test: stand-in (REASON) OLD => NEW; ... -->
                                               literal replacements before running, e.g.
                                               ``/path/to/imagenet => data/imagenet``; each
                                               OLD must occur in the block; NEW may be
                                               empty; the (REASON) is optional
    <!-- docs-test: before COMMAND -->         shell: COMMAND runs first (makes a stand-in
                                               for a user's file or folder the doc names)
    <!-- docs-test: continue -->               python: runs after the doc's previous
                                               python block, with the names it defined

New docs/*.md pages are picked up automatically.
"""
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import yaml
from conftest import REPO_ROOT, LocalServer

DOCS = [REPO_ROOT / 'README.md'] + sorted((REPO_ROOT / 'docs').glob('*.md'))
RUN_LANGS = {'bash': 'shell', 'shell': 'shell', 'sh': 'shell', 'python': 'python'}
DIRECTIVE = re.compile(r'^\s*<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->\s*$')
FENCE = re.compile(r'^(\s*)```\s*([\w-]*)\s*$')
URL = re.compile(r'https://(?:download\.openmmlab\.com|huggingface\.co)/\S+?'
                 r'\.(?:pth|bin|safetensors)')
TINY_TOWER = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
COPIED = ('mmclip', 'tools', 'demo', 'configs', 'model-index.yml', 'setup.py', 'setup.cfg',
          'tests/data/images')
STAND_IN_CONFIG = 'configs/clip/vit-base-p32_clip-openai-pre_3rdparty_in1k.py'
STAND_IN_CHECKPOINT = 'standin/vit-base-p32.pth'
PLACEHOLDERS = [  # longest first: CHECKPOINT.pth before CHECKPOINT
    ('CHECKPOINT.pth', STAND_IN_CHECKPOINT), ('CHECKPOINT', STAND_IN_CHECKPOINT),
    ('CKPT', STAND_IN_CHECKPOINT), ('CONFIG', STAND_IN_CONFIG), ('DIR', 'tests/data/images')]
BLOCK_TIMEOUT_S = 300


@dataclass
class Block:
    """One fenced block and the markers above it."""
    doc: str
    line: int
    lang: str
    code: str
    skip: Optional[str] = None
    stand_ins: List[Tuple[str, str]] = field(default_factory=list)
    before: List[str] = field(default_factory=list)
    cont: bool = False

    @property
    def id(self) -> str:
        return f'{self.doc}:{self.line}'


def _directives(lines: List[str], fence_index: int) -> List[Tuple[str, str]]:
    """The ``docs-test`` comments stacked right above line ``fence_index``."""
    found = []
    i = fence_index - 1
    while i >= 0 and DIRECTIVE.match(lines[i]):
        found.append(DIRECTIVE.match(lines[i]).groups())
        i -= 1
    return found[::-1]


def _apply_directives(block: Block, directives: List[Tuple[str, str]]) -> None:
    for kind, arg in directives:
        if kind == 'skip':
            if not arg:
                raise ValueError(f'{block.id}: "docs-test: skip" needs a reason')
            block.skip = arg
        elif kind == 'stand-in':
            arg = re.sub(r'^\(.*?\)\s*', '', arg)  # the optional (reason)
            for pair in filter(None, (p.strip() for p in arg.split(';'))):
                old, sep, new = pair.partition('=>')
                if not sep or not old.strip():
                    raise ValueError(f'{block.id}: stand-in {pair!r} is not "OLD => NEW"')
                block.stand_ins.append((old.strip(), new.strip()))
        elif kind == 'before' and arg and block.lang == 'shell':
            block.before.append(arg)
        elif kind == 'continue' and block.lang == 'python':
            block.cont = True
        else:
            raise ValueError(f'{block.id}: "docs-test: {kind} {arg}" is not a marker for a '
                             f'{block.lang} block; use skip, stand-in, before (shell) or '
                             'continue (python)')


def extract_blocks(path: Path) -> List[Block]:
    """The runnable fenced blocks of a markdown file, in order, dedented, with markers."""
    lines = path.read_text().splitlines()
    doc = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].strip() == '```'), None)
        if end is None:
            raise ValueError(f'{doc}:{i + 1}: unclosed code fence')
        if lang in RUN_LANGS:
            body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                    for line in lines[i + 1:end]]
            block = Block(doc, i + 1, RUN_LANGS[lang], '\n'.join(body) + '\n')
            _apply_directives(block, _directives(lines, i))
            blocks.append(block)
        elif _directives(lines, i):
            raise ValueError(f'{doc}:{i + 1}: a docs-test marker above a ```{lang} fence, '
                             'which is never run')
        i = end + 1
    return blocks


def all_blocks() -> List[Block]:
    return [block for doc in DOCS for block in extract_blocks(doc)]


# ---- the stand-in checkout ---------------------------------------------------------

def stand_in_url(url: str, base: str) -> str:
    """``https://host/path/name-<hash>.ext`` -> ``<base>/host/path/name.ext``."""
    host_path = url.split('://', 1)[1]
    return f'{base}/' + re.sub(r'-[0-9a-f]{8,}(?=\.\w+$)', '', host_path)


def shrink_configs(folder: Path, base: str) -> None:
    """Rewrite each config of ``folder`` as its resolved self (no ``_base_``) with tiny
    towers and stand-in URLs: every other value is the config's own. Resolved first, all
    of them, as configs inherit from each other."""
    from mmengine.config import Config
    resolved = {path: Config.fromfile(str(path)) for path in sorted(folder.glob('*.py'))}
    for path, cfg in resolved.items():
        model = cfg.model
        model.backbone.arch = dict(TINY_TOWER)
        model.head.in_channels = TINY_TOWER['embed_dims']
        if model.backbone.get('frozen_stages'):
            model.backbone.frozen_stages = TINY_TOWER['num_layers']
        if 'text_backbone' in model:
            model.text_backbone.arch = dict(TINY_TOWER)
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader):  # worker start-up would cost more than the tiny model
                cfg[loader].update(num_workers=0, persistent_workers=False)
        path.write_text(URL.sub(lambda m: stand_in_url(m.group(0), base), cfg.pretty_text))


def make_imagenet(folder: Path, images: Path) -> None:
    """Layout A of docs/evaluation.md from the test photos: val/*.JPEG + meta/val.txt."""
    from PIL import Image
    (folder / 'val').mkdir(parents=True)
    (folder / 'meta').mkdir()
    lines = []
    for label, photo in enumerate(sorted(p for p in images.iterdir() if p.suffix != '.md')):
        name = f'ILSVRC2012_val_{label + 1:08d}.JPEG'
        Image.open(photo).convert('RGB').save(folder / 'val' / name, quality=90)
        lines.append(f'{name} {label}')
    (folder / 'meta' / 'val.txt').write_text('\n'.join(lines) + '\n')


class CheckpointServer(LocalServer):
    """Serves a tiny checkpoint for each stand-in URL, built from the config of the zoo
    entry that names it on the first request (most docs use two or three of the 30)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.configs: Dict[str, Path] = {}  # served path -> config
        self._lock = threading.Lock()
        served = self._httpd.RequestHandlerClass  # partial(Handler, directory=root)
        server = self

        class Ensuring(served.func):
            def do_GET(self):
                server.ensure(self.path.lstrip('/'))
                super().do_GET()

        self._httpd.RequestHandlerClass = partial(Ensuring, *served.args, **served.keywords)

    def base(self) -> str:
        return self.url('').rstrip('/')

    def ensure(self, served_path: str) -> None:
        with self._lock:
            target = self.root / served_path
            if target.exists() or served_path not in self.configs:
                return
            save_tiny_checkpoint(self.configs[served_path], target)


def save_tiny_checkpoint(config: Path, target: Path) -> None:
    """The state dict of the (tiny) model ``config`` builds, seeded, as ``target``'s
    format says."""
    import torch
    from safetensors.torch import save_file

    import mmclip
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in mmclip.get_model(str(config)).state_dict().items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == '.safetensors':
        save_file(state, str(target))
    else:
        torch.save(state, target)


def build_template(root: Path, server: CheckpointServer) -> Path:
    """The stand-in checkout every doc's copy starts from."""
    for name in COPIED:
        src, dst = REPO_ROOT / name, root / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.egg-info'))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    base = server.base()
    for metafile in (root / 'configs').rglob('*.yml'):
        for entry in yaml.safe_load(metafile.read_text()).get('Models', []):
            converted = entry.get('Converted From') or {}
            for url in filter(None, (entry.get('Weights'), converted.get('Weights'))):
                served = stand_in_url(url, base)[len(base) + 1:]
                server.configs[served] = root / entry['Config']
        metafile.write_text(URL.sub(lambda m: stand_in_url(m.group(0), base),
                                    metafile.read_text()))
    shrink_configs(root / 'configs' / 'clip', base)
    make_imagenet(root / 'data' / 'imagenet', REPO_ROOT / 'tests' / 'data' / 'images')
    save_tiny_checkpoint(root / STAND_IN_CONFIG, root / STAND_IN_CHECKPOINT)
    return root


# ---- running a block ---------------------------------------------------------------

def prepared_code(block: Block, base: str) -> str:
    """The block as it runs: its stand-ins, the URLs and placeholders rewritten."""
    code = block.code
    for old, new in block.stand_ins:
        if old not in code:
            raise AssertionError(f'{block.id}: stand-in {old!r} does not occur in the block '
                                 '(the doc changed; update its docs-test marker)')
        code = code.replace(old, new)
    code = URL.sub(lambda m: stand_in_url(m.group(0), base), code)
    for name, value in PLACEHOLDERS:
        code = re.sub(rf'(?<![\w/.-]){re.escape(name)}(?![\w])', value, code)
    if block.lang == 'shell':
        code = ''.join(f'{line}\n' for line in block.before) + code
        code = re.sub(r'^pip install [^\n]*?&& ', '', code, flags=re.M)
        code = re.sub(r'^pip install [^\n]*$', ':', code, flags=re.M)
    return code


def run_code(lang: str, code: str, checkout: Path, bin_dir: Path, name: str
             ) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(checkout),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop('MMCLIP_DEBUG', None)
    script = checkout / f'.docs_test_{name}.{"py" if lang == "python" else "sh"}'
    script.write_text(code)
    argv = [sys.executable, str(script)] if lang == 'python' else [
        'bash', '-e', '-o', 'pipefail', str(script)]
    return subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)


@pytest.fixture(scope='module')
def stand_ins(tmp_path_factory) -> Iterator[dict]:
    """The checkpoint server, the template checkout, a ``python`` on PATH that is this
    interpreter, and each doc's checkout (made on its first block)."""
    root = tmp_path_factory.mktemp('docs')
    (root / 'served').mkdir()
    server = CheckpointServer(root / 'served')
    bin_dir = root / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python').symlink_to(sys.executable)
    state = dict(server=server, template=build_template(root / 'template', server),
                 bin=bin_dir, root=root, checkouts={})
    yield state
    server.close()


def checkout_for(stand_ins: dict, doc: str) -> Path:
    checkouts = stand_ins['checkouts']
    if doc not in checkouts:
        target = stand_ins['root'] / 'checkouts' / re.sub(r'\W', '_', doc)
        shutil.copytree(stand_ins['template'], target, symlinks=True)
        checkouts[doc] = target
    return checkouts[doc]


BLOCKS = all_blocks()


def continued_from(block: Block, base: str) -> str:
    """For a ``continue`` block, the code of the doc's python blocks it continues."""
    if not block.cont:
        return ''
    earlier = [b for b in BLOCKS[:BLOCKS.index(block)]
               if b.doc == block.doc and b.lang == 'python']
    if not earlier:
        raise AssertionError(f'{block.id}: "docs-test: continue" without a python block above')
    return continued_from(earlier[-1], base) + prepared_code(earlier[-1], base)


def test_every_doc_with_commands_is_read():
    """The pages known to hold commands yield blocks: a fence the parser missed (another
    language tag, an indented fence) would silently leave them untested."""
    pages = {'README.md'} | {f'docs/{name}.md' for name in (
        'benchmarks', 'deployment', 'evaluation', 'finetune', 'zeroshot')}
    assert pages <= {block.doc for block in BLOCKS}


@pytest.mark.parametrize('block', BLOCKS, ids=lambda b: b.id)
def test_doc_block_runs(block: Block, stand_ins):
    checkout = checkout_for(stand_ins, block.doc)
    code = prepared_code(block, stand_ins['server'].base())
    code = continued_from(block, stand_ins['server'].base()) + code
    if block.skip:
        if block.lang == 'python':
            compile(code, block.id, 'exec')
        pytest.skip(block.skip)
    result = run_code(block.lang, code, checkout, stand_ins['bin'], str(block.line))
    assert result.returncode == 0, (
        f'{block.id} ({block.lang}) exited {result.returncode}:\n{code}\n--- output ---\n'
        f'{(result.stdout + result.stderr)[-4000:]}')


def test_a_doc_that_drifted_from_the_code_fails(stand_ins, tmp_path):
    """The harness itself: an option or a name the code no longer has, and a stand-in
    marker whose text left the block, each fail; a marker nobody defined is refused."""
    doc = tmp_path / 'drifted.md'
    doc.write_text('```shell\npython tools/test.py CONFIG CHECKPOINT --no-such-option\n```\n\n'
                   '```python\nfrom mmclip import no_such_function\n```\n\n'
                   '<!-- docs-test: stand-in /data/gone => data/imagenet -->\n'
                   '```shell\npython tools/test.py CONFIG CHECKPOINT\n```\n')
    option, name, marker = extract_blocks(doc)
    checkout = checkout_for(stand_ins, doc.name)
    base = stand_ins['server'].base()
    for block, expected in ((option, 'unrecognized arguments: --no-such-option'),
                            (name, "cannot import name 'no_such_function'")):
        result = run_code(block.lang, prepared_code(block, base), checkout, stand_ins['bin'],
                          'drifted')
        assert result.returncode != 0 and expected in result.stderr, result.stderr[-2000:]
    with pytest.raises(AssertionError, match="stand-in '/data/gone' does not occur"):
        prepared_code(marker, base)
    doc.write_text('<!-- docs-test: skp typo -->\n```shell\ntrue\n```\n')
    with pytest.raises(ValueError, match='is not a marker'):
        extract_blocks(doc)
    doc.write_text('<!-- docs-test: skip -->\n```shell\ntrue\n```\n')
    with pytest.raises(ValueError, match='needs a reason'):
        extract_blocks(doc)
