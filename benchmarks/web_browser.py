"""The browser harness shared by tests/test_web.py and benchmarks.web: serve, then drive Chromium.

- `serving`: examples/web/serve.py in a child process on a free loopback port (COOP/COEP
  on or off), stopped on exit;
- `drive`: benchmarks/web_driver.mjs under node, which drives the system Chromium through
  playwright-core (examples/web/node_modules; never a downloaded browser) and answers JSON;
- `missing`: what of Chromium, node and the npm packages is absent (.ci/setup_web.sh
  installs them), so a caller can skip with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "examples" / "web"
DRIVER = Path(__file__).resolve().parent / "web_driver.mjs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")


def missing() -> list[str]:
    """The absent pieces, each with how to get it; [] when the browser harness can run."""
    modules = WEB / "node_modules"
    pieces = (("chromium (apt-get install chromium)", CHROMIUM), ("node (apt-get install nodejs)", NODE),
              ("examples/web/node_modules (npm ci in examples/web)",
               (modules / "playwright-core").is_dir() and (modules / "onnxruntime-web").is_dir()))
    return [what for what, present in pieces if not present]


@contextmanager
def serving(export: Path, *, isolate: bool = True, timeout_s: float = 20) -> Iterator[str]:
    """The base URL (http://127.0.0.1:PORT/) of serve.py serving `export` at /export/."""
    command = [sys.executable, str(WEB / "serve.py"), "--export", str(export), "--port", "0", "--quiet"]
    process = subprocess.Popen(command + ([] if isolate else ["--no-isolation"]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # "serving http://127.0.0.1:PORT/ ..." once it listens
        if not line.startswith("serving "):
            process.kill()
            raise RuntimeError(f"serve.py did not start: {line}{process.stderr.read()[-2000:]}")
        yield line.split()[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive(pages: list[dict], *, timeout_s: float = 300) -> dict:
    """Run web_driver.mjs on `pages` (its header documents the entries) in one Chromium launch."""
    job = {"executable": CHROMIUM, "timeout_ms": int(timeout_s * 1000), "pages": pages}
    result = subprocess.run([NODE, str(DRIVER)], input=json.dumps(job), capture_output=True, text=True,
                            timeout=timeout_s + 30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the browser driver failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)
