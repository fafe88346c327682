#!/usr/bin/env bash
# Build the C++ example (examples/cpp) into build/cpp/spritegen_cpp, and the same program built
# with -fno-exceptions (as game engines build) into build/cpp/noexcept/spritegen_cpp.
#
# What it needs and where each piece comes from (see docs/cpp.md for why this pairing works):
#   - ONNX Runtime headers: Debian trixie's libonnxruntime-dev (1.21), fetched with
#     `apt-get download` through a private sources list and private apt state/cache under
#     build/cpp/apt, then unpacked with `dpkg -x` into build/cpp/ort. Nothing from trixie is
#     added to the system's sources or installed system-wide (this machine runs bookworm).
#   - libonnxruntime: the onnxruntime wheel's onnxruntime/capi/libonnxruntime.so.<version>
#     (the one the Python runtime uses). The wheel has no dev symlink, so we link it as
#     build/cpp/ort/lib/libonnxruntime.so (and .so.1, its SONAME) for the linker; the build
#     copies it beside each program (lib/libonnxruntime.so.1, RPATH $ORIGIN/lib), so the
#     programs keep working when the Python environment moves or goes.
#   - nlohmann/json: Debian bookworm's header-only nlohmann-json3-dev (apt-get install).
#   - cmake and g++: already on the machine (checked below).
#   - examples/cpp/contract_limits.hpp: regenerated from spritegen.runtime.limits and
#     spritegen.contract by examples/cpp/gen_limits.py (rewritten only when a value changed).
#
# Usage: bash .ci/setup_cpp.sh            (idempotent; re-running only rebuilds what changed)
# Env:   SPRITEGEN_CPP_BUILD=dir          build folder (default: <repo>/build/cpp)
#        ONNXRUNTIME_LIB=/path/libonnxruntime.so.X   use another libonnxruntime
#        PYTHON=python3                   the interpreter whose onnxruntime wheel supplies the library
# Any failure prints one `error:` line naming the step, and exits non-zero.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SPRITEGEN_CPP_BUILD:-$REPO/build/cpp}"
ORT="$BUILD/ort"          # ONNXRUNTIME_ROOT: include/ and lib/
APT="$BUILD/apt"          # private apt config, lists and cache for the trixie download
TRIXIE_PKG="libonnxruntime-dev"
PYTHON="${PYTHON:-python3}"

die() { echo "error: setup_cpp: $*" >&2; exit 1; }
log() { echo "setup_cpp: $*"; }
# Up to 3 tries, 5 s apart: a registry hiccup must not turn CI red.
retry() { "$@" || { sleep 5; "$@"; } || { sleep 5; "$@"; }; }

need_tools() {
  for tool in cmake g++ dpkg apt-get "$PYTHON"; do
    command -v "$tool" >/dev/null \
      || die "'$tool' not found; the build needs cmake, g++, dpkg, apt-get and a python with onnxruntime"
  done
}

# 1. nlohmann/json (bookworm, header-only) --------------------------------------------
install_json() {
  [[ -f /usr/include/nlohmann/json.hpp ]] && return 0
  log "installing nlohmann-json3-dev (bookworm)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends nlohmann-json3-dev >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1 || true
    apt-get install -y --no-install-recommends nlohmann-json3-dev >/dev/null \
      || die "could not apt-get install nlohmann-json3-dev (needs the Debian registry)"
  fi
}

# 2. ORT headers from trixie's libonnxruntime-dev, without touching the system's apt ---
fetch_headers() {
  [[ -f "$ORT/include/onnxruntime_cxx_api.h" ]] && return 0
  log "fetching $TRIXIE_PKG (Debian trixie) headers into $ORT/include"
  mkdir -p "$APT/etc/preferences.d" "$APT/state/lists/partial" "$APT/cache/archives/partial" \
           "$APT/debs" "$ORT/include"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main" > "$APT/etc/sources.list"
  : > "$APT/state/status"   # an empty dpkg status: this apt knows nothing of the system's packages
  local opts=(
    -o "Dir::Etc::SourceList=$APT/etc/sources.list" -o "Dir::Etc::SourceParts=$APT/etc/none"
    -o "Dir::Etc::Preferences=$APT/etc/none" -o "Dir::Etc::PreferencesParts=$APT/etc/preferences.d"
    -o "Dir::State=$APT/state" -o "Dir::State::Status=$APT/state/status"
    -o "Dir::Cache=$APT/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
  )
  retry apt-get "${opts[@]}" --error-on=any update >"$APT/update.log" 2>&1 \
    || die "cannot fetch Debian trixie's package list for the ONNX Runtime headers" \
           "($(grep -m1 -E '^(E|W):' "$APT/update.log" || echo "see $APT/update.log"))"
  rm -f "$APT"/debs/*.deb
  (cd "$APT/debs" && retry apt-get "${opts[@]}" download "$TRIXIE_PKG" >"$APT/download.log" 2>&1) \
    || die "cannot download $TRIXIE_PKG from Debian trixie" \
           "($(grep -m1 -E '^(E|W):' "$APT/download.log" || echo "see $APT/download.log"))"
  local deb
  deb="$(ls "$APT"/debs/*.deb)"
  rm -rf "$APT/root" && dpkg -x "$deb" "$APT/root" || die "dpkg -x $deb failed"
  cp "$APT/root/usr/include/onnxruntime/"*.h "$ORT/include/" \
    || die "$deb has no usr/include/onnxruntime/*.h"
  log "headers: $(basename "$deb")"
}

# 3. libonnxruntime: the wheel's versioned file, linked under the names ld and ld.so want
link_library() {
  local lib="${ONNXRUNTIME_LIB:-}"
  if [[ -z "$lib" ]]; then
    lib="$("$PYTHON" - <<'EOF'
import glob, os, sys
try:
    import onnxruntime
except ImportError:
    sys.exit("the onnxruntime wheel is not installed (pip install onnxruntime)")
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.*")))
if not libs:
    sys.exit(f"no libonnxruntime.so.* in {capi}")
print(libs[-1])
EOF
)" || die "cannot locate libonnxruntime from the onnxruntime wheel"
  fi
  [[ -f "$lib" ]] || die "ONNXRUNTIME_LIB=$lib does not exist"
  mkdir -p "$ORT/lib"
  ln -sfn "$lib" "$ORT/lib/libonnxruntime.so"
  ln -sfn "$lib" "$ORT/lib/libonnxruntime.so.1"
  log "library: $lib"
}

# 4. configure and build: the default program and the -fno-exceptions one ---------------
build() {  # build DIR [cmake options...]
  local dir="$1"
  shift
  mkdir -p "$dir"
  cmake -S "$REPO/examples/cpp" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
        -DONNXRUNTIME_ROOT="$ORT" "$@" >"$dir/cmake.log" 2>&1 \
    || { tail -20 "$dir/cmake.log" >&2; die "cmake configure failed (full log: $dir/cmake.log)"; }
  cmake --build "$dir" -j "$(nproc)" >"$dir/build.log" 2>&1 \
    || { tail -30 "$dir/build.log" >&2; die "build failed (full log: $dir/build.log)"; }
  log "built $dir/spritegen_cpp $*"
}

# 4a. the bounds the C++ sampler checks, generated from the Python package (never retyped) ---
generate_limits() {
  "$PYTHON" "$REPO/examples/cpp/gen_limits.py" "$REPO/examples/cpp/contract_limits.hpp" \
    || die "cannot generate examples/cpp/contract_limits.hpp from spritegen.runtime.limits (is spritegen installed for $PYTHON?)"
}

need_tools
mkdir -p "$BUILD"
generate_limits
install_json
fetch_headers
link_library
build "$BUILD"
build "$BUILD/noexcept" -DSPRITEGEN_NO_EXCEPTIONS=ON
