#!/usr/bin/env bash
# The wheels gpu_check.sh installs on a GPU machine that has torch, torchvision, timm,
# numpy, pillow, opencv, matplotlib, pyyaml and rich but not the rest of mmclip's needs:
# pure-Python wheels for CPython 3.12 (the GPU image's), downloaded here, no dependencies
# resolved (each needed one is named). About 4 MB.
#
#   bash tools/analysis_tools/gpu_wheels.sh [DIR]     # default .whl
set -euo pipefail
DIR=${1:-.whl}
PACKAGES=(mmengine==0.10.7 mmcv-lite==2.2.0 addict yapf platformdirs termcolor
          open_clip_torch==3.3.0 ftfy wcwidth)
mkdir -p "$DIR"
"${PYTHON:-python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$DIR" "${PACKAGES[@]}"
ls "$DIR"
