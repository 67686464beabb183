#!/usr/bin/env bash
# The GPU check: one unattended run, on a fresh GPU machine that has torch (and timm) but
# not mmclip's other dependencies, that always leaves a report.
#
#   bash tools/analysis_tools/gpu_wheels.sh .whl                  # here, with pip's index
#   bash tools/analysis_tools/gpu_check.sh OUT_DIR [WHEELS_DIR]   # there, from the repo root
#
# Steps, each under its own time limit, each run whatever the previous ones did:
#   machine     the GPU, driver, torch and CPU
#   install     WHEELS_DIR/*.whl (default .whl) with pip --no-index --no-deps into TARGET
#               (default OUT_DIR/site), put first on PYTHONPATH: no interpreter is changed
#   imports     mmclip and what it needs import
#   cuda_tests  the tests that run only on CUDA (pytest -m cuda; CUDA_TESTS overrides)
#   benchmark   tools/analysis_tools/gpu_benchmark.sh into OUT_DIR/benchmark (its size
#               variables pass through: PRECISIONS, BATCH, NUM_IMAGES, ...)
#   dist_test   tools/dist_test.sh with 2 processes over NCCL, when there are 2 GPUs
# Each step writes OUT_DIR/<step>.log while it runs and, when it ends, one JSON line to
# OUT_DIR/steps.jsonl: {"step", "status" (ok, failed, timeout, skipped), "rc", "seconds",
# "limit_s"}. The limits add up to at most BUDGET seconds (default 480); the script refuses
# to start otherwise. STEPS selects steps (default: all, in the order above).
# CPU rehearsal (tests/test_gpu_check.py): DEVICE=cpu with the gpu_benchmark.sh smoke sizes.
set -uo pipefail

OUT=${1:?usage: gpu_check.sh OUT_DIR [WHEELS_DIR]}
WHEELS=${2:-.whl}
export PYTHON=${PYTHON:-python3} DEVICE=${DEVICE:-cuda}
TARGET=${TARGET:-$OUT/site}
BUDGET=${BUDGET:-480}
STEPS=${STEPS:-machine install imports cuda_tests benchmark dist_test}
declare -A LIMIT=([machine]=20 [install]=60 [imports]=40 [cuda_tests]=120 [benchmark]=200
                  [dist_test]=40)
mkdir -p "$OUT" "$TARGET"
OUT=$(cd "$OUT" && pwd) TARGET=$(cd "$TARGET" && pwd)
export OUT TARGET WHEELS PYTHONUNBUFFERED=1
export PYTHONPATH="$TARGET:$PWD${PYTHONPATH:+:$PYTHONPATH}"

total=0
for name in $STEPS; do
  [[ -n "${LIMIT[$name]:-}" ]] || { echo "ERROR: unknown step '$name' in STEPS" >&2; exit 2; }
  total=$(( total + LIMIT[$name] ))
done
if (( total > BUDGET )); then
  echo "ERROR: the steps' limits add up to ${total} s, over BUDGET=${BUDGET} s" >&2
  exit 2
fi

step_machine() {
  if [[ $DEVICE == cuda ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  fi
  "$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
  lscpu | grep -E '^Model name' || true
}

step_install() {
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl)
  if (( ${#wheels[@]} == 0 )); then
    echo "no wheels in $WHEELS: nothing to install"
    return 0
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$TARGET" "${wheels[@]}"
  ls "$TARGET"
}

step_imports() {
  "$PYTHON" -c "import mmclip, mmengine, mmcv, timm, torch; from mmclip.apis import get_model; \
print('mmclip', mmclip.__version__, 'mmengine', mmengine.__version__, 'timm', timm.__version__)"
}

step_cuda_tests() {
  # shellcheck disable=SC2086  # CUDA_TESTS is a list of pytest arguments
  "$PYTHON" -m pytest -q -p no:cacheprovider ${CUDA_TESTS:--m cuda tests}
}

step_benchmark() {
  bash tools/analysis_tools/gpu_benchmark.sh "$OUT/benchmark"
}

step_dist_test() {
  local gpus
  gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
  if [[ $DEVICE != cuda ]] || (( gpus < 2 )); then
    echo "skipped: needs 2 GPUs (DEVICE=$DEVICE, $gpus found)"
    return 99  # skipped
  fi
  local ckpt="$OUT/benchmark/vit-base-p16_random.pth" data=${DATA:-/tmp/mmclip_jpeg50k}
  [[ -f $ckpt && -f $data/meta/val.txt ]] || { echo "no checkpoint/data from benchmark"; return 1; }
  bash tools/dist_test.sh configs/clip/vit-base-p16_pt-64xb64_in1k.py "$ckpt" 2 \
    --work-dir "$OUT/dist_test" --cfg-options "test_dataloader.dataset.data_root=$data"
}
export -f step_machine step_install step_imports step_cuda_tests step_benchmark step_dist_test

for name in $STEPS; do
  start=$(date +%s)
  echo "=== $name (limit ${LIMIT[$name]} s, $(date -u +%H:%M:%S))"
  timeout -k 5 "${LIMIT[$name]}" bash -c "step_$name" > "$OUT/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    99) status=skipped ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  seconds=$(( $(date +%s) - start ))
  printf '{"step": "%s", "status": "%s", "rc": %d, "seconds": %d, "limit_s": %d}\n' \
    "$name" "$status" "$rc" "$seconds" "${LIMIT[$name]}" >> "$OUT/steps.jsonl"
  echo "$name: $status (rc $rc, $seconds s); log: $OUT/$name.log"
  tail -n 5 "$OUT/$name.log"
done
