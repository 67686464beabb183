"""Shared fixtures: the real photos, and a local HTTP file server started by the test.

Every test runs with its own empty home, caches (``TORCH_HOME``, ``XDG_CACHE_HOME``,
``HF_HOME``), no ``MMCLIP_*`` variable and its own working directory, which the tools it
starts in subprocesses inherit: a test run never writes into the user's real caches (a
``verified/*.json`` naming a pytest temp file, zero-shot heads) nor into ``./work_dirs``
of the checkout. The whole session runs under a temporary home too (module-scoped
fixtures are built before any test's own); what changed in the real caches meanwhile is
listed at the end.
"""
import http.server
import itertools
import os
import os.path as osp
import shutil
import site
import tempfile
import threading
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest
import torch.hub

IMAGES_DIR = Path(__file__).resolve().parent / 'data' / 'images'
REPO_ROOT = Path(__file__).resolve().parents[1]
# Variables that would point a cache at the user's own folders whatever HOME says.
UNSET_ENV = ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'TORCH_HUB', 'XDG_CONFIG_HOME')
# A user's ``pip install --user`` packages are found through HOME; subprocesses keep them.
USER_BASE = site.getuserbase()


def real_cache_dirs() -> List[str]:
    """The folders a test run must never change: the torch and Hugging Face caches of the
    environment pytest was started in, and the checkout's default work dir."""
    cache = os.environ.get('XDG_CACHE_HOME', osp.expanduser('~/.cache'))
    torch_home = os.environ.get('TORCH_HOME', osp.join(cache, 'torch'))
    hf_home = os.environ.get('HF_HOME', osp.join(cache, 'huggingface'))
    return [osp.expanduser(torch_home), osp.expanduser(hf_home), str(REPO_ROOT / 'work_dirs')]


Snapshot = Dict[str, Tuple[int, int]]


def snapshot(folders: List[str]) -> Snapshot:
    """Each file and folder under ``folders`` -> (size, mtime_ns); an absent folder adds
    nothing, so creating it is a change."""
    entries: Snapshot = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for path in [root] + [osp.join(root, name) for name in dirs + files]:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:  # removed while walking: the diff shows it
                    continue
                entries[path] = (st.st_size, st.st_mtime_ns)
    return entries


def snapshot_changes(before: Snapshot, after: Snapshot) -> List[str]:
    """'created / changed / removed PATH' for each difference, sorted."""
    changes = [f'created {p}' for p in after.keys() - before.keys()]
    changes += [f'removed {p}' for p in before.keys() - after.keys()]
    changes += [f'changed {p}' for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(changes)


def isolate_environment(mp: pytest.MonkeyPatch, root: Path) -> Dict[str, Path]:
    """Point HOME and every cache at fresh folders under ``root``, drop ``MMCLIP_*``, and
    return the folders by variable name. ``torch.hub.get_dir()`` must follow TORCH_HOME:
    a ``torch.hub.set_dir`` call would pin it to one folder for the rest of the run."""
    folders = {name: root / sub for name, sub in (
        ('HOME', 'home'), ('XDG_CACHE_HOME', 'home/.cache'), ('TORCH_HOME', 'torch_home'),
        ('HF_HOME', 'hf_home'))}
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        mp.setenv(name, str(folder))
    mp.setenv('PYTHONUSERBASE', USER_BASE)
    for name in UNSET_ENV + tuple(n for n in os.environ if n.startswith('MMCLIP_')):
        mp.delenv(name, raising=False)
    hub = torch.hub.get_dir()
    if hub != str(folders['TORCH_HOME'] / 'hub'):
        pytest.fail(f'torch.hub.get_dir() is {hub}, not under TORCH_HOME: a torch.hub.set_dir '
                    'call pinned the hub folder; the tests would write into it.')
    return folders


_session: Dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Snapshot the real caches, then run the session (collection and module-scoped
    fixtures included) under a temporary home."""
    folders = real_cache_dirs()
    _session.update(folders=folders, before=snapshot(folders),
                    root=Path(tempfile.mkdtemp(prefix='mmclip-test-home-')),
                    mp=pytest.MonkeyPatch())
    isolate_environment(_session['mp'], _session['root'])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """List what changed in the real caches during the run. A warning, not a failure:
    another process of the user (a second test run of an older checkout, a download) may
    have written there meanwhile; ``test_isolation.py`` asserts it over one test."""
    if not _session:
        return
    _session['mp'].undo()
    shutil.rmtree(_session['root'], ignore_errors=True)
    changes = snapshot_changes(_session['before'], snapshot(_session['folders']))
    reporter = session.config.pluginmanager.get_plugin('terminalreporter')
    if changes and reporter is not None:
        reporter.write_line('\n'.join(
            ['WARNING: the real caches changed during this test run (written by it, or by '
             'another process meanwhile):'] + changes[:20]), yellow=True)


@pytest.fixture
def real_cache_changes() -> Callable[[], List[str]]:
    """A function listing what changed in the real caches since the test began (one test,
    not the session: other processes of the user may write there too)."""
    before = snapshot(_session['folders'])
    return lambda: snapshot_changes(before, snapshot(_session['folders']))


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory) -> Iterator[Dict[str, Path]]:
    """Each test: a fresh home and caches (see ``isolate_environment``) and a fresh working
    directory, beside (not in) ``tmp_path``. Its own MonkeyPatch, so that a test's
    ``monkeypatch.undo()`` does not bring the session's folders back mid-test."""
    root = tmp_path_factory.mktemp('env')
    with pytest.MonkeyPatch.context() as mp:
        folders = isolate_environment(mp, root)
        cwd = root / 'cwd'
        cwd.mkdir()
        mp.chdir(cwd)
        yield folders
    renew_logger_left_on_a_closed_stream()
    unmapped = unmapped_signal_stack()
    if unmapped:
        pytest.fail(f'this test left the main thread on an unmapped alternate signal stack '
                    f'({unmapped}): the next signal handled there (Ctrl-C, a DataLoader\'s '
                    f'SIGCHLD) would end the process in SIGSEGV', pytrace=False)


def renew_logger_left_on_a_closed_stream() -> None:
    """A logger made while ``capsys`` held ``sys.stdout`` (a Runner's, a tool's) stays
    mmengine's current one with a console handler on that closed stream: the next test's
    ``print_log(logger='current')`` would print "--- Logging error ---" to stderr. A fresh
    current logger, on the session's stdout, takes its place."""
    from mmengine.logging import MMLogger
    handlers = MMLogger.get_current_instance().handlers
    if any(getattr(getattr(h, 'stream', None), 'closed', False) for h in handlers):
        MMLogger.get_instance(f'mmclip-tests-{next(_LOGGER_NAMES)}')


_LOGGER_NAMES = itertools.count()


def unmapped_signal_stack() -> str:
    """The main thread's alternate signal stack as 'address+size' when it is enabled but
    no longer mapped (a library freed it without putting the old one back), else ''."""
    if not os.path.exists('/proc/self/maps'):
        return ''
    from mmclip.utils.signal_stack import current_signal_stack
    stack = current_signal_stack()
    if stack is None or not stack.ss_sp or stack.ss_flags & 2:  # SS_DISABLE
        return ''
    with open('/proc/self/maps') as maps:
        for line in maps:
            low, high = (int(x, 16) for x in line.split()[0].split('-'))
            if low <= stack.ss_sp < high:
                return ''
    return f'{stack.ss_sp:#x}+{stack.ss_size}'


def load_tool(path: str):
    """A tool script as a module (tools/ is not a package): ``load_tool('predict.py')``."""
    from mmclip.cli.launch import load_script
    return load_script(str(REPO_ROOT / 'tools' / path), Path(path).stem)


@pytest.fixture(scope='session')
def images_dir() -> Path:
    """``<repo>/tests/data/images`` (read only: copy files elsewhere before writing)."""
    if not IMAGES_DIR.is_dir():
        pytest.fail(f'The test photos are expected at {IMAGES_DIR}.')
    return IMAGES_DIR


class LocalServer:
    """Serves ``root`` at ``http://127.0.0.1:<port>/`` and records each GET path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: List[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output clean
                pass

        self._httpd = http.server.ThreadingHTTPServer(
            ('127.0.0.1', 0), partial(Handler, directory=str(root)))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f'http://127.0.0.1:{self.port}/{name}'

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """A ``LocalServer`` over a fresh ``tmp_path / 'served'`` folder."""
    root = tmp_path / 'served'
    root.mkdir()
    server = LocalServer(root)
    yield server
    server.close()


@pytest.fixture
def torch_home(isolated_environment) -> Path:
    """The test's empty ``TORCH_HOME`` (download cache; no ``MMCLIP_MIRRORS`` is set)."""
    return isolated_environment['TORCH_HOME']


TINY_ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
SEED_CONFIG = Path(__file__).resolve().parents[1] / 'configs/clip/vit-base-p32_pt-64xb64_in1k.py'


def write_tiny_config(folder: Path, img_size: int = 64, patch_size: int = 16,
                      num_classes: int = 1000) -> Path:
    """Write a config inheriting the ViT-B/32 seed config with a 2-layer, 64-wide CLIP ViT
    and a test pipeline at ``img_size`` (short-edge bicubic resize + center crop) into
    ``folder``; return its path."""
    path = folder / f'tiny_{img_size}_{patch_size}_{num_classes}.py'
    path.write_text(
        f"_base_ = {str(SEED_CONFIG)!r}\n"
        f"model = dict(\n"
        f"    backbone=dict(arch=dict(_delete_=True, **{TINY_ARCH!r}),\n"
        f"                  img_size={img_size}, patch_size={patch_size}),\n"
        f"    head=dict(in_channels={TINY_ARCH['embed_dims']}, num_classes={num_classes}))\n"
        f"data_preprocessor = dict(num_classes={num_classes})\n"
        f"test_pipeline = [\n"
        f"    dict(type='LoadImageFromFile'),\n"
        f"    dict(type='ResizeEdge', scale={img_size}, edge='short', backend='pillow',\n"
        f"         interpolation='bicubic'),\n"
        f"    dict(type='CenterCrop', crop_size={img_size}),\n"
        f"    dict(type='PackInputs'),\n"
        f"]\n"
        f"test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    return path


@pytest.fixture
def tiny_config(tmp_path):
    """Factory: ``tiny_config(img_size=64, patch_size=16, num_classes=1000)``, see
    ``write_tiny_config``."""

    def make(img_size: int = 64, patch_size: int = 16, num_classes: int = 1000) -> Path:
        return write_tiny_config(tmp_path, img_size, patch_size, num_classes)

    return make
