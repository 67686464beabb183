"""Shared fixtures: the real photos, and a local HTTP file server started by the test."""
import http.server
import threading
from functools import partial
from pathlib import Path
from typing import List

import pytest

IMAGES_DIR = Path(__file__).resolve().parent / 'data' / 'images'


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
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty ``TORCH_HOME`` (download cache) and no ``MMCLIP_MIRRORS`` for the test."""
    home = tmp_path / 'torch_home'
    monkeypatch.setenv('TORCH_HOME', str(home))
    monkeypatch.delenv('MMCLIP_MIRRORS', raising=False)
    return home


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
