"""mmclip installation.

``pip install -e .`` brings everything needed to import and run; ``.[multimodal]`` adds
open_clip_torch for the zero-shot models' text prompts (its BPE tokenizer); ``.[onnx]`` adds
ONNX export and the ONNX Runtime backend; ``.[openvino]`` the OpenVINO backend (CPU) for an
exported model; ``.[evaluation]`` adds clip_benchmark (the reference of the evaluation
suite's numbers); ``.[tests]`` adds pytest, timm (used only by tests and the checkpoint
converter's --verify), ruff and the other extras.
"""
import os
import shutil
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


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


class BuildPyWithModelIndex(build_py):
    """``build_py`` that also puts ``configs/`` and ``model-index.yml`` into the built
    package's ``mmclip/.mim`` (an installed wheel has no source tree;
    ``mmclip.apis.model_index_path`` reads this copy there, a checkout reads the originals).

    Only the build directory is written, never the source tree: ``setup.py --version``,
    egg-info and editable installs leave the checkout as it is. An sdist carries
    ``configs/`` and ``model-index.yml`` through MANIFEST.in, so a wheel built from it gets
    the same copy.
    """

    def run(self) -> None:
        super().run()
        root = os.path.dirname(os.path.abspath(__file__))
        mim = os.path.join(self.build_lib, 'mmclip', '.mim')
        shutil.rmtree(mim, ignore_errors=True)
        os.makedirs(mim)
        shutil.copy(os.path.join(root, 'model-index.yml'), mim)
        shutil.copytree(os.path.join(root, 'configs'), os.path.join(mim, 'configs'),
                        ignore=shutil.ignore_patterns('__pycache__'))


# torch.onnx.export(dynamo=True) translates through onnxscript. onnxruntime 1.28 is the first
# release that itself keeps every external-data path of a model inside the model's folder
# (microsoft/onnxruntime #26776, #27430, #27539, #28408, #28709, #28725; mmclip checks too).
ONNX_EXTRA = ['onnx>=1.16', 'onnxruntime>=1.28', 'onnxscript>=0.3']
# onnx: mmclip checks an .onnx (external data, metadata) before OpenVINO reads it. openvino
# 2024.4 is the first to convert the exported graph (Gelu approximate='none', opset 20) with
# numpy 2; checked with tests/test_onnx.py under 2024.4.0, 2025.0.0 and 2026.4.1.
OPENVINO_EXTRA = ['openvino>=2024.4', 'onnx>=1.16']
MULTIMODAL_EXTRA = ['open_clip_torch>=2.24']
# SigLIP's tokenizers are Hugging Face tokenizers (sentencepiece vocabularies), which
# open_clip runs through transformers.
SIGLIP_EXTRA = MULTIMODAL_EXTRA + ['transformers>=4.40', 'sentencepiece>=0.2']
# clip_benchmark, the reference the evaluation suite's numbers are tested against (it
# pulls transformers, webdataset and pycocoevalcap; mmclip's own suite needs none of them);
# h5py for PCAM, whose files torchvision reads as HDF5.
EVALUATION_EXTRA = ['clip-benchmark>=1.6.2', 'scikit-learn>=1.0', 'h5py>=3.0']

setup(
    name='mmclip',
    version=read_version(),
    description='CLIP image classifiers (ImageNet fine-tuned and zero-shot), OpenMMLab style',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools', 'demo')),
    cmdclass={'build_py': BuildPyWithModelIndex},
    # Class lists of the ImageNet shift sets (mmclip/datasets/meta/README.md) and the
    # published numbers the evaluation suite shows beside its own.
    package_data={'mmclip': ['datasets/meta/*', 'evaluation/published_results.json']},
    install_requires=[
        # The scoped allow-list names its stand-ins (obj, 'module.name'): torch 2.6.
        'torch>=2.6',
        'torchvision>=0.21',
        'mmengine>=0.10.3,<0.11',
        'filelock>=3.0',
        mmcv_requirement(),
        'numpy',
        'pillow>=9.1',
        'pyyaml',
        'safetensors>=0.4',
    ],
    extras_require={
        'onnx': ONNX_EXTRA,
        'openvino': OPENVINO_EXTRA,
        # CLIP's BPE tokenizer (and its vocabulary) for zero-shot text prompts.
        'multimodal': MULTIMODAL_EXTRA,
        'evaluation': EVALUATION_EXTRA,
        # The SigLIP / SigLIP 2 zero-shot towers' tokenizers.
        'siglip': SIGLIP_EXTRA,
        'tests': ['pytest>=7', 'pytest-xdist>=3', 'timm>=1.0.9', 'ruff>=0.5'] + ONNX_EXTRA +
        OPENVINO_EXTRA + SIGLIP_EXTRA + EVALUATION_EXTRA,
    },
    zip_safe=False,
)
