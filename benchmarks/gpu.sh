#!/usr/bin/env bash
# The GPU measurement as a prepared sequence of device calls (docs/benchmarks.md, "GPU").
#
#   bash benchmarks/gpu.sh                      # every call on the GPU machine, from the repo root
#   DEVICE=cpu QUICK=1 OUT=/tmp/g bash benchmarks/gpu.sh   # the same script on a CPU (how it is tested)
#
# Every call runs this same script; what it does depends on what the call carried:
#   0. spritegen importable with no network (pip install -e . --no-deps, else a symlink tree);
#   1. .gpu-pack/ carried (benchmarks/gpu_pack.py split/plan): verify and stash this call's parts
#      outside the repo; while parts are missing, start the export in the background and end
#      the call (exit 0). Once all are there: reassemble, verify the sha256, pip-install the
#      onnxruntime-gpu wheel into $SITE and put it first on PYTHONPATH. Wheels carried whole
#      in .whl/ are installed there too;
#   2. LD_LIBRARY_PATH gets the nvidia-* wheels' library folders (CUDA 13, cuBLAS, cuDNN);
#   3. the environment report ($OUT/gpu-env.txt), the wheel's CUDA requirements vs what is installed;
#   4. the probe: a convolution must really run on the CUDA provider ($OUT/gpu-probe.json);
#   5. the export of the bundled checkpoint (or $EXPORT_DIR);
#   6. `python -m benchmarks.run --device $DEVICE`: eager / TorchScript / CUDA-graph PyTorch and
#      ONNX Runtime CUDA with and without CUDA graphs, DDIM-25 at batch 1 and DDPM-500 at batch 30;
#   7. the CUDA tests ($OUT/cuda-tests.json; DEVICE=cpu runs them only with TESTS=1).
# Steps 4, 6 and 7 each record their failure and the script goes on; its exit status is the
# benchmark's, else the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/benchmarks/results}"
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
SITE="${SITE:-/tmp/site}"
STORE="${SPRITEGEN_GPU_STASH:-/var/tmp/spritegen-gpu-pack}"
EXPORT_DIR="${EXPORT_DIR:-/tmp/spritegen-export}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-330}"
TESTS_TIMEOUT="${TESTS_TIMEOUT:-150}"
TESTS="${TESTS:-$([ "$DEVICE" = cuda ] && echo 1)}"
TEST_FILES="${TEST_FILES:-tests/test_runtime_cuda.py tests/test_concurrency.py tests/test_device_thread.py}"
export PYTHONUNBUFFERED=1 SPRITEGEN_GPU_STASH="$STORE"
mkdir -p "$OUT"
say() { echo "[gpu.sh] $*"; }
EXPORT_PID=/tmp/spritegen-export.pid
PACK_DIR="${PACK_DIR:-.gpu-pack}"  # what gpu_pack.py split wrote; each call carries pack.json + its parts

# 0. spritegen importable ----------------------------------------------------------------
if ! "$PY" -c "import spritegen.runtime, spritegen.export" 2>/dev/null; then
  if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >/tmp/spritegen-pip.log 2>&1; then
    say "pip install -e . failed (see /tmp/spritegen-pip.log); using a symlink tree"
    rm -rf /tmp/sgpath && mkdir -p /tmp/sgpath/spritegen && cp -r spritegen/. /tmp/sgpath/spritegen/
    for sub in export runtime training; do ln -sfn "$PWD/$sub" "/tmp/sgpath/spritegen/$sub"; done
    export PYTHONPATH="/tmp/sgpath:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
"$PY" -c "import spritegen.runtime" || { say "spritegen is not importable; stopping"; exit 1; }

export_in_background() {  # overlaps the export with the calls that carry parts
  [ -f "$EXPORT_DIR/manifest.json" ] || [ -f "$EXPORT_PID" ] && return
  setsid nohup "$PY" -c "from spritegen.export.cli import main; main()" --out "$EXPORT_DIR" \
    >/tmp/spritegen-export.log 2>&1 </dev/null &
  echo $! >"$EXPORT_PID"
  say "export started in the background (pid $(cat "$EXPORT_PID"))"
}

# 1. onnxruntime-gpu from carried parts --------------------------------------------------
if [ -f "$PACK_DIR/pack.json" ]; then
  "$PY" benchmarks/gpu_pack.py stash --pack "$PACK_DIR" --store "$STORE"
  case $? in
    0) ;;
    3) export_in_background; say "this call's parts are stashed; run the next call of the plan"; exit 0 ;;
    *) exit 1 ;;
  esac
  "$PY" benchmarks/gpu_pack.py install --store "$STORE" --target "$SITE" || exit 1
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  say "installing carried wheels: $(ls .whl | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. CUDA libraries from the nvidia-* wheels ----------------------------------------------
LIBS="$("$PY" benchmarks/gpu_pack.py libpath)"
[ -n "$LIBS" ] && export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# 3. environment -------------------------------------------------------------------------
{
  date -u; uname -a; nvidia-smi 2>&1 | head -20
  echo "PYTHONPATH=${PYTHONPATH:-}"; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  [ -f "$STORE/pack.json" ] && echo "CUDA requirements: $("$PY" benchmarks/gpu_pack.py check-libs --store "$STORE")"
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
    print("onnxruntime providers listed (not proof that they load; see gpu-probe.json):",
          ort.get_available_providers())
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

# 4. a convolution must run on the provider ----------------------------------------------
"$PY" -m benchmarks.gpu_probe --device "$DEVICE" --out "$OUT/gpu-probe.json" >/dev/null \
  && say "probe: a convolution ran on $DEVICE and matched numpy" \
  || say "probe FAILED: ONNX Runtime rows will fail too (see gpu-probe.json)"

# 5. export ------------------------------------------------------------------------------
if [ -f "$EXPORT_PID" ]; then
  for _ in $(seq 240); do kill -0 "$(cat "$EXPORT_PID")" 2>/dev/null || break; sleep 1; done
  rm -f "$EXPORT_PID"
fi
if [ ! -f "$EXPORT_DIR/manifest.json" ]; then
  say "exporting the bundled checkpoint into $EXPORT_DIR"
  timeout 240 "$PY" -c "from spritegen.export.cli import main; main()" --out "$EXPORT_DIR" >/tmp/spritegen-export.log 2>&1 \
    || { say "export failed:"; tail -20 /tmp/spritegen-export.log; cp /tmp/spritegen-export.log "$OUT/"; exit 1; }
fi

# 6. the benchmark -----------------------------------------------------------------------
ARGS=(--device "$DEVICE" --export-dir "$EXPORT_DIR" --out "$OUT")
[ -n "${QUICK:-}" ] && ARGS+=(--quick)
[ -n "${BACKENDS:-}" ] && ARGS+=(--backends "$BACKENDS")
ARGS+=(--rounds "${ROUNDS:-1}")  # one round keeps the call within minutes; ROUNDS=3 as on the CPU
say "python -m benchmarks.run ${ARGS[*]}"
timeout "$BENCH_TIMEOUT" "$PY" -m benchmarks.run "${ARGS[@]}" 2>&1 | tee "$OUT/gpu-run.log"
status=${PIPESTATUS[0]}

# 7. the CUDA tests ----------------------------------------------------------------------
if [ -n "$TESTS" ]; then
  say "python -m pytest $TEST_FILES"
  # shellcheck disable=SC2086
  timeout "$TESTS_TIMEOUT" "$PY" -m pytest -q -p no:cacheprovider $TEST_FILES --junitxml /tmp/spritegen-cuda-tests.xml \
    2>&1 | tee -a "$OUT/gpu-run.log"
  tests=${PIPESTATUS[0]}
  "$PY" benchmarks/gpu_pack.py junit-json /tmp/spritegen-cuda-tests.xml "$OUT/cuda-tests.json" "$tests"
  [ "$status" -eq 0 ] && status=$tests
fi
say "exit $status; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
