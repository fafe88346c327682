#!/usr/bin/env bash
# The GPU part of the benchmark in one call, for a lent GPU machine (see docs/benchmarks.md).
#
#   bash benchmarks/gpu.sh                      # on the GPU machine, from the repo root; results in $OUT
#   DEVICE=cpu QUICK=1 OUT=/tmp/g bash benchmarks/gpu.sh   # the same script on a CPU (how it is tested)
#
# What it does, each step bounded so the whole call stays within a few minutes:
#   1. makes spritegen importable with no network: pip install -e . --no-deps, else a symlink tree;
#      wheels carried in .whl/ (e.g. onnxruntime-gpu, see the docs) are installed into /tmp/site;
#   2. writes the environment (nvidia-smi, versions, ORT providers) to $OUT/gpu-env.txt;
#   3. exports the bundled checkpoint (or uses $EXPORT_DIR);
#   4. runs `python -m benchmarks.run --device $DEVICE` into $OUT: eager and TorchScript CUDA,
#      PyTorch CUDA graphs, and ONNX Runtime CUDA (IO binding + CUDA graphs) when the
#      installed onnxruntime has the CUDA provider; otherwise those rows say why not.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/benchmarks/results}"
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-420}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
say() { echo "[gpu.sh] $*"; }

# 1. spritegen importable --------------------------------------------------------------
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  say "installing carried wheels: $(ls .whl | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import spritegen.runtime, spritegen.export" 2>/dev/null; then
  if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >/tmp/spritegen-pip.log 2>&1; then
    say "pip install -e . failed (see /tmp/spritegen-pip.log); using a symlink tree"
    rm -rf /tmp/sgpath && mkdir -p /tmp/sgpath/spritegen && cp -r spritegen/. /tmp/sgpath/spritegen/
    for sub in export runtime training; do ln -sfn "$PWD/$sub" "/tmp/sgpath/spritegen/$sub"; done
    export PYTHONPATH="/tmp/sgpath:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
"$PY" -c "import spritegen.runtime" || { say "spritegen is not importable; stopping"; exit 1; }

# 2. environment ------------------------------------------------------------------------
{
  date -u; uname -a; nvidia-smi 2>&1 | head -20
  "$PY" - <<'PYEOF'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "onnxruntime", "onnx", "numpy"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), getattr(module, "__file__", ""))
    except Exception as exc:
        print(name, "missing:", exc)
try:
    import onnxruntime as ort
    print("onnxruntime providers:", ort.get_available_providers())
except Exception:
    pass
try:
    import torch
    print("torch cuda:", torch.cuda.is_available(), torch.version.cuda,
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception:
    pass
PYEOF
} >"$OUT/gpu-env.txt" 2>&1
cat "$OUT/gpu-env.txt"

# 3. export -----------------------------------------------------------------------------
EXPORT_DIR="${EXPORT_DIR:-/tmp/spritegen-export}"
if [ ! -f "$EXPORT_DIR/manifest.json" ]; then
  say "exporting the bundled checkpoint into $EXPORT_DIR"
  timeout 240 "$PY" -c "from spritegen.export.cli import main; main()" --out "$EXPORT_DIR" >"$OUT/export.log" 2>&1 \
    || { say "export failed:"; tail -20 "$OUT/export.log"; exit 1; }
fi

# 4. the benchmark ----------------------------------------------------------------------
ARGS=(--device "$DEVICE" --export-dir "$EXPORT_DIR" --out "$OUT")
[ -n "${QUICK:-}" ] && ARGS+=(--quick)
[ -n "${BACKENDS:-}" ] && ARGS+=(--backends "$BACKENDS")
ARGS+=(--rounds "${ROUNDS:-1}")  # one round keeps the call within minutes; ROUNDS=3 as on the CPU
say "python -m benchmarks.run ${ARGS[*]}"
timeout "$BENCH_TIMEOUT" "$PY" -m benchmarks.run "${ARGS[@]}" 2>&1 | tee "$OUT/gpu-run.log"
status=${PIPESTATUS[0]}
say "exit $status; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
