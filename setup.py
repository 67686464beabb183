"""mmclip installation.

``pip install -e .`` brings everything needed to import and run; ``.[multimodal]`` adds
open_clip_torch for the zero-shot models' text prompts (its BPE tokenizer); ``.[tests]`` adds
pytest, timm (used only by tests and the checkpoint converter's --verify) and open_clip_torch.
"""
import os
import shutil
import subprocess
import sys

from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open(os.path.join(os.path.dirname(__file__), 'mmclip', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def mmcv_requirement() -> str:
    """``mmcv-lite`` (no compiled ops) unless a full ``mmcv`` is already installed.

    Both distributions provide the ``mmcv`` package, so installing mmcv-lite over a full
    mmcv would overwrite its compiled ops. pip builds this file in an isolated
    environment, so ask the target interpreter itself, with the build's path cleared.
    """
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONNOUSERSITE')}
    probe = ('import importlib.metadata as m\n'
             'try:\n    print(m.version("mmcv"))\nexcept m.PackageNotFoundError:\n    pass')
    try:
        found = subprocess.run([sys.executable, '-c', probe], env=env, capture_output=True,
                               text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ''
    return 'mmcv>=2.0.0,<2.3.0' if found else 'mmcv-lite>=2.0.0,<2.3.0'


def add_mim_extension() -> None:
    """Copy ``configs/`` and ``model-index.yml`` into ``mmclip/.mim`` for the wheel.

    An installed wheel has no source tree: ``mmclip.apis.model_index_path`` finds the
    model zoo in this copy (a source checkout or editable install reads the originals).
    Without ``model-index.yml`` beside this file (building from an sdist), the
    ``.mim`` copy shipped in it is used as it is.
    """
    root = os.path.dirname(os.path.abspath(__file__))
    if not os.path.isfile(os.path.join(root, 'model-index.yml')):
        return
    mim = os.path.join(root, 'mmclip', '.mim')
    shutil.rmtree(mim, ignore_errors=True)
    os.makedirs(mim)
    shutil.copy(os.path.join(root, 'model-index.yml'), mim)
    shutil.copytree(os.path.join(root, 'configs'), os.path.join(mim, 'configs'),
                    ignore=shutil.ignore_patterns('__pycache__'))


add_mim_extension()
setup(
    name='mmclip',
    version=read_version(),
    description='CLIP ViT-B/16 and ViT-B/32 ImageNet-1k classifiers, OpenMMLab style',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools', 'demo')),
    include_package_data=True,
    package_data={'mmclip': ['.mim/**/*', '.mim/*']},
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'mmengine>=0.10.3,<0.11',
        mmcv_requirement(),
        'numpy',
        'pillow>=9.1',
        'pyyaml',
        'safetensors>=0.4',
    ],
    extras_require={
        # CLIP's BPE tokenizer (and its vocabulary) for zero-shot text prompts.
        'multimodal': ['open_clip_torch>=2.24'],
        'tests': ['pytest>=7', 'timm>=1.0.9', 'open_clip_torch>=2.24'],
    },
    zip_safe=False,
)
