#!/usr/bin/env bash
# Every number of docs/benchmarks.md's GPU section, in a few minutes on one GPU (H100):
#   1. model-only ViT-B/32 and ViT-B/16 at 224, batch 256, fp32 / bf16 / fp16, ours vs timm
#      with the same weights, interleaved in one process;
#   2. the same compiled (torch.compile), bf16;
#   3. end-to-end, files -> predictions, on a synthetic 50,000-JPEG ImageNet-val folder made
#      from the real photos (load/model split: is the run bound by JPEG decoding?);
#   4. tools/test.py --amp on that folder (wall time) and its start-up to the first batch;
#   5. when onnxruntime has the CUDA provider (onnxruntime-gpu): the exported model in ONNX
#      Runtime (fp32) beside torch and timm fp32, interleaved.
#
#   bash tools/analysis_tools/gpu_benchmark.sh [OUT_DIR]
#
# Environment overrides: PYTHON (the interpreter; default python), IMAGES (source photos;
# default ../shared/images, shared/images or tests/data/images),
# DATA (the JPEG folder, made once; default /tmp/mmclip_jpeg50k), NUM_IMAGES (50000),
# WORKERS (DataLoader workers; default CPU cores - 2), SKIP_COMPILE=1, and for a smoke test
# on a CPU: DEVICE=cpu PRECISIONS='fp32 bf16' BATCH=8 WARMUP=0 ITERS=1 NUM_IMAGES=64.
# Results: OUT_DIR/*.json (machine-readable) and *.log (the printed tables).
set -euo pipefail

OUT=${1:-work_dirs/gpu_benchmark}
if [[ -z "${IMAGES:-}" ]]; then
  for candidate in ../shared/images shared/images tests/data/images; do
    [[ -d $candidate ]] && IMAGES=$candidate && break
  done
fi
[[ -d "${IMAGES:-}" ]] || { echo "no source photos: set IMAGES=DIR" >&2; exit 2; }
PYTHON=${PYTHON:-python}
DATA=${DATA:-/tmp/mmclip_jpeg50k}
NUM_IMAGES=${NUM_IMAGES:-50000}
WORKERS=${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
DEVICE=${DEVICE:-cuda}
PRECISIONS=${PRECISIONS:-fp32 bf16 fp16}
BATCH=${BATCH:-256}
WARMUP=${WARMUP:-10}
ITERS=${ITERS:-50}
BENCH=tools/analysis_tools/benchmark.py
B16=configs/clip/vit-base-p16_pt-64xb64_in1k.py
B32=configs/clip/vit-base-p32_pt-64xb64_in1k.py
mkdir -p "$OUT"

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
{
  if [[ $DEVICE == cuda ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  fi
  "$PYTHON" -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'timm', timm.__version__)"
  lscpu | grep -E '^Model name' || true
  echo "CPU cores: $(nproc), DataLoader workers: $WORKERS"
} | tee "$OUT/machine.txt"

step "1. model-only, batch $BATCH, ours vs timm"
for patch in 32 16; do
  config=B$patch
  # shellcheck disable=SC2086  # PRECISIONS is a list
  "$PYTHON" $BENCH "${!config}" --device "$DEVICE" --batch-size "$BATCH" --precision $PRECISIONS \
    --compare-timm --warmup "$WARMUP" --iters "$ITERS" --out "$OUT/model_b$patch.json" \
    | tee "$OUT/model_b$patch.log"
done

if [[ "${SKIP_COMPILE:-0}" != 1 ]]; then
  step "2. model-only compiled, bf16, batch $BATCH, ours vs timm"
  for patch in 32 16; do
    config=B$patch
    "$PYTHON" $BENCH "${!config}" --device "$DEVICE" --batch-size "$BATCH" --precision bf16 \
      --compile --compare-timm --warmup "$WARMUP" --iters "$ITERS" \
      --out "$OUT/model_b${patch}_compile.json" \
      | tee "$OUT/model_b${patch}_compile.log"
  done
fi

step "3. synthetic JPEG folder ($NUM_IMAGES images) and a random-weight checkpoint"
if [[ ! -f "$DATA/meta/val.txt" ]]; then
  "$PYTHON" tools/analysis_tools/make_jpeg_folder.py "$IMAGES" "$DATA" --num-images "$NUM_IMAGES"
fi
CKPT="$OUT/vit-base-p16_random.pth"
"$PYTHON" - "$CKPT" <<'EOF'
import sys, timm, torch
from mmclip.checkpoint import convert_timm_state_dict
torch.manual_seed(0)
model = timm.create_model('vit_base_patch16_clip_224')
torch.save(dict(state_dict=convert_timm_state_dict(model.state_dict())), sys.argv[1])
EOF

step "3. end-to-end B/16 bf16, batch $BATCH, $WORKERS workers, all $NUM_IMAGES images"
"$PYTHON" $BENCH $B16 --device "$DEVICE" --batch-size "$BATCH" --precision bf16 --data "$DATA" \
  --num-workers "$WORKERS" --warmup "$WARMUP" --iters "$ITERS" --out "$OUT/e2e_b16.json" \
  | tee "$OUT/e2e_b16.log"

step "4. start-up of tools/test.py to its first batch"
"$PYTHON" $BENCH $B16 --device "$DEVICE" --batch-size "$BATCH" --precision bf16 --startup \
  --checkpoint "$CKPT" --data "$DATA" --num-workers "$WORKERS" --out "$OUT/startup_b16.json" \
  | tee "$OUT/startup_b16.log"

step "4. tools/test.py --amp on all $NUM_IMAGES images"
start=$(date +%s.%N)
"$PYTHON" tools/test.py $B16 "$CKPT" --amp --work-dir "$OUT/test_py" --cfg-options \
  "test_dataloader.dataset.data_root=$DATA" "test_dataloader.batch_size=$BATCH" \
  "test_dataloader.num_workers=$WORKERS" 2>&1 | tail -n 12 | tee "$OUT/test_py.log"
echo "tools/test.py wall: $("$PYTHON" -c "print(f'{$(date +%s.%N) - $start:.1f}')") s" \
  | tee -a "$OUT/test_py.log"

step "5. ONNX Runtime CUDA provider, fp32, batch $BATCH"
if "$PYTHON" -c "import onnxruntime as o, sys; \
sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  for patch in 32 16; do
    config=B$patch
    "$PYTHON" $BENCH "${!config}" --device "$DEVICE" --batch-size "$BATCH" --precision fp32 \
      --backend torch onnxruntime --compare-timm --warmup "$WARMUP" --iters "$ITERS" \
      --out "$OUT/onnxruntime_b$patch.json" | tee "$OUT/onnxruntime_b$patch.log"
  done
else
  echo "skipped: this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
fi

step "done: results in $OUT"
