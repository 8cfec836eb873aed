#!/usr/bin/env bash
# GPU figures for docs/performance.md, in one go on a machine with an NVIDIA GPU.
#
# Installs what it needs into its own virtual environment (this checkout, editable, with
# tensorflow[and-cuda]; torch and lightly with --with-torch), then within about 10 minutes runs:
#   1. benchmarks/augment.py: SimCLR views in the graph, under XLA and as a per-image tf.data map,
#      at 32, 96 and 224 px, and the views' share of a ResNet-18 SimCLR step;
#   2. benchmarks/train_step.py: every method's training step with XLA, in float32 and in
#      mixed_float16 (the global Keras policy set before the models are built);
#   3. benchmarks/train_step.py --suite references (keras-io's example and PyTorch on the same
#      encoders), only with --with-torch.
# and writes every table, headed by the card's name (nvidia-smi --query-gpu=name), into
# <out>/gpu.md, with each benchmark's JSON beside it. Each benchmark runs under `timeout`, so one
# that hangs cannot take the whole budget; one that fails is noted in gpu.md and the rest go on.
#
#   bash benchmarks/gpu.sh                    # install, then measure (about 10 minutes)
#   bash benchmarks/gpu.sh --with-torch       # also PyTorch and lightly, and the references
#   bash benchmarks/gpu.sh --no-install       # use the python on PATH as it is
#   bash benchmarks/gpu.sh --quick            # seconds on a CPU: checks that the script runs
#   bash benchmarks/gpu.sh --out DIR          # where gpu.md and the JSON files go (results/gpu)
set -euo pipefail

QUICK=0
INSTALL=1
TORCH=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; INSTALL=0 ;;
    --no-install) INSTALL=0 ;;
    --with-torch) TORCH=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/results/gpu}"
mkdir -p "$OUT"
REPORT="$OUT/gpu.md"
PYTHON="${PYTHON:-python3}"

if [ "$QUICK" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=""  # the quick mode checks the script, on the CPU
  CARD="CPU (--quick: no GPU used)"
else
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu.sh: nvidia-smi not found: this script measures an NVIDIA GPU (--quick runs on a CPU)" >&2
    exit 1
  fi
  CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
fi

if [ "$INSTALL" = 1 ]; then
  VENV="$REPO/.venv-gpu"
  "$PYTHON" -m venv "$VENV"
  PYTHON="$VENV/bin/python"
  "$PYTHON" -m pip install --quiet --upgrade pip
  "$PYTHON" -m pip install --quiet -e "$REPO" "tensorflow[and-cuda]"
  if [ "$TORCH" = 1 ]; then
    "$PYTHON" -m pip install --quiet torch lightly || echo "gpu.sh: torch/lightly not installed" >&2
  fi
fi

if [ "$QUICK" = 1 ]; then
  AUGMENT_ARGS=(--quick --step-share)
  STEP_ARGS=(--quick --xla on)
  REFERENCE_ARGS=(--suite references --quick --no-resnet)
  LIMIT=120
else
  AUGMENT_ARGS=(--step-share --share-batch 128 --repeats 3)
  STEP_ARGS=(--xla on --steps 4)
  REFERENCE_ARGS=(--suite references --xla on)
  LIMIT=200
fi

{
  echo "# keras_ssl on $CARD"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
} > "$REPORT"

run() {  # run TITLE LIMIT_S COMMAND...: the command's output into the report, under a time limit
  local title="$1" limit="$2"
  shift 2
  echo "## $title" >> "$REPORT"
  echo >> "$REPORT"
  echo "    $*" >> "$REPORT"
  echo >> "$REPORT"
  echo "gpu.sh: $title" >&2
  if timeout "$limit" "$@" > "$OUT/last.log" 2>&1; then
    grep -v -e '^WARNING' -e '^I0000' -e '^E0000' -e '^W0000' -e '^To enable' \
      "$OUT/last.log" >> "$REPORT" || true
  else
    echo "FAILED or over ${limit}s (exit $?); the last lines:" >> "$REPORT"
    tail -n 20 "$OUT/last.log" >> "$REPORT"
  fi
  echo >> "$REPORT"
}

# Mixed precision: the global policy set before train_step.py builds its models.
MIXED="$OUT/train_step_mixed_float16.py"
cat > "$MIXED" <<'PY'
"""benchmarks/train_step.py under the mixed_float16 policy (written by benchmarks/gpu.sh)."""
import sys

sys.path.insert(0, "benchmarks")
import keras  # noqa: E402

keras.mixed_precision.set_global_policy("mixed_float16")
import train_step  # noqa: E402

sys.exit(train_step.main(sys.argv[1:]))
PY

run "Augmentation: in-graph SimCLR views against a per-image tf.data map" "$LIMIT" \
  "$PYTHON" benchmarks/augment.py "${AUGMENT_ARGS[@]}" --json "$OUT/augment.json"
run "Every method, XLA, float32" "$LIMIT" \
  "$PYTHON" benchmarks/train_step.py "${STEP_ARGS[@]}" --json "$OUT/train_step_float32.json"
run "Every method, XLA, mixed_float16" "$LIMIT" \
  "$PYTHON" "$MIXED" "${STEP_ARGS[@]}" --json "$OUT/train_step_mixed_float16.json"
if [ "$TORCH" = 1 ]; then
  run "References: keras-io's example and PyTorch on the same encoders" "$LIMIT" \
    "$PYTHON" benchmarks/train_step.py "${REFERENCE_ARGS[@]}" --json "$OUT/references.json"
fi
rm -f "$OUT/last.log"
echo "gpu.sh: wrote $REPORT" >&2
