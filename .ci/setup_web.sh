#!/usr/bin/env bash
# Install what tests/test_web.py and benchmarks/web.py need for the browser runtime:
#   - Chromium from Debian's packages (apt-get install chromium), when /usr/bin/chromium is absent;
#   - examples/web/node_modules from examples/web/package-lock.json (`npm ci`): the pinned
#     onnxruntime-web and playwright-core. --ignore-scripts: no install script runs, so
#     nothing downloads a browser build; playwright-core drives the system Chromium.
#   - node and npm (Debian's nodejs/npm) when absent.
# Usage: bash .ci/setup_web.sh   (idempotent). Any failure prints one `error:` line and exits non-zero.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$REPO/examples/web"

die() { echo "error: setup_web: $*" >&2; exit 1; }
log() { echo "setup_web: $*"; }

apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium (Debian)"
    apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm (Debian)"
    apt_install nodejs npm
fi

lock="$WEB/package-lock.json"
stamp="$WEB/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    log "npm ci in examples/web"
    (cd "$WEB" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || die "npm ci failed in $WEB"
fi
log "chromium $(chromium --version 2>/dev/null | awk '{print $2}'), node $(node --version), onnxruntime-web $(cd "$WEB" && node -p "require('./node_modules/onnxruntime-web/package.json').version")"
