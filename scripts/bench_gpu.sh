#!/usr/bin/env bash
# usage: scripts/bench_gpu.sh [--out DIR] [--quick]
# Model benchmark on one GPU with Keras on JAX (no TensorFlow needed) beside PyTorch:
#  * U-Net 576x576x1, 2 classes, mixed_bfloat16: NVIDIA DeepLearningExamples' UNet_Medical
#    setting (572x572 padded to 576); training at batch 8 and inference at batch 16, each
#    alternating with the same U-Net in PyTorch (torch.compile and eager);
#  * FCN-8s (KITTI variant: decoder_channels 512, no pretrained weights), 384x1248, 2 classes,
#    training at batch 8;
#  * the bf16 matmul peak the TFLOP/s are compared with.
# Writes DIR/unet.json, DIR/fcn8.json, DIR/bench_model.json and the table DIR/bench_model.md
# (DIR: bench-gpu). Needs $PYTHON (python3) with JAX, Keras and, for the reference, PyTorch
# (without it the U-Net runs alone); tfseg is taken from this checkout. About 5-6 minutes on
# an H200, most of it XLA's and Inductor's first compilations. --quick: tiny shapes and
# models, a smoke run that a CPU finishes in a minute or two.
set -euo pipefail
out=bench-gpu quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || { sed -n 2p "$0" >&2; exit 2; }; out=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) sed -n 2p "$0" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

if [ $quick = 1 ]; then
  unet=(--height 32 --width 32 --batch 2 --inference-batch 2 --options '{"unet": {"depth": 2, "base_filters": 4}}')
  fcn=(--height 32 --width 64 --batch 2 --options '{"fcn8_vgg16": {"decoder_channels": 8, "width_multiplier": 0.0625}}')
  timing=(--steps 2 --rounds 2 --warmup 1 --peak-size 256)
else
  unet=(--height 576 --width 576 --batch 8 --inference-batch 16)
  fcn=(--height 384 --width 1248 --batch 8 --options '{"fcn8_vgg16": {"decoder_channels": 512}}')
  timing=(--steps 10 --rounds 3 --warmup 3 --peak-size 8192)
fi

reference=(--reference torch)
if ! "$python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
  echo "PyTorch is not installed: the U-Net runs without its reference" >&2
  reference=()
fi

# One process per configuration; a failed one leaves the other's results standing.
status=0 results=()
bench() {
  local name=$1; shift
  echo "== $name" >&2
  if "$python" -m tfseg bench model --classes 2 --precision mixed_bfloat16 "${timing[@]}" "$@" \
       --json "$out/$name.json" > "$out/$name.txt"; then
    results+=("$out/$name.json")
  else
    echo "== $name FAILED" >&2
    status=1
  fi
}
mkdir -p "$out"
bench unet --models unet --channels 1 "${unet[@]}" ${reference[@]+"${reference[@]}"}
bench fcn8 --models fcn8_vgg16 --tasks train "${fcn[@]}"
[ ${#results[@]} -gt 0 ] || exit 1
"$python" -m tfseg bench model --report "${results[@]}" --json "$out/bench_model.json" \
  --markdown "$out/bench_model.md"
exit $status
