#!/usr/bin/env bash
# The GPU check in one command (bench/gpu_check.py; docs/benchmarks.md, "GPU check"):
#   bash bench/gpu_check.sh                        # on a lent GPU machine, .whl/ carried
#   bash bench/gpu_check.sh --device cpu --quick   # dry run: every part at toy sizes on the CPU
# Installs the wheels in .whl/ (bench/fetch_wheels.sh) whose packages this Python lacks, then runs
# every part. The log, results.md and results.json go to $OUT (default ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export OUT="${OUT:-$PWD/gpu_check_out}" PYTHONUNBUFFERED=1 WANDB_MODE=offline
export PYTORCH_NVML_BASED_CUDA_CHECK=1  # is_available() without initialising CUDA: parts are forked
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
missing=()
for wheel in .whl/*.whl; do
  [ -e "$wheel" ] || continue
  name="$(basename "$wheel" | cut -d- -f1)"
  "$PYTHON" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$name" 2>/dev/null ||
    missing+=("$wheel")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${missing[@]}" || exit 1
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
"$PYTHON" bench/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
