"""`spritegen serve` as a process: SIGKILL takes Triton and its stubs along, a bad
address (a port in use, an unresolvable host) is one line before anything starts, and an
export without a fitted few-step sampler serves the other samplers. Real
servers on 127.0.0.1, started and stopped by the tests; no wait depends on speed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spritegen.serving.watchdog import descendants
from tests.serving_support import free_ports, running_server

STARTED_BOUND_S = 300  # a bound on a hang; no test depends on reaching it


def test_sigkill_takes_triton_and_its_stubs_along(export_dir: Path, tmp_path: Path) -> None:
    """SIGKILL of `spritegen serve` (no chance to clean up): tritonserver and the stubs go too,
    although Triton was told to drain for 600 s, and the ports are free again."""
    with running_server(export_dir, tmp_path, "--exit-timeout", "600") as server:
        children = [pid for pid in descendants(server.process.pid) if _comm(pid) != "python"]
        assert any(_comm(pid) == "tritonserver" for pid in children), [_comm(p) for p in children]
        server.process.kill()
        server.process.wait(timeout=STARTED_BOUND_S)
        deadline = time.monotonic() + STARTED_BOUND_S  # a bound on a hang, far below the 600 s drain
        while alive := [pid for pid in children if _running(pid)]:
            assert time.monotonic() < deadline, f"still alive after the serve process died: {alive}"
            time.sleep(0.1)
    while busy := [port for port in (server.http, server.grpc) if not _bindable(port)]:
        # a socket closes when the last process holding it has gone, which the kernel may finish
        # after the processes above are reaped: wait for that state, bounded
        assert time.monotonic() < deadline, f"ports {busy} still in use after the serve process died"
        time.sleep(0.1)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead child its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("case", ["port-in-use", "unresolvable-host"])
def test_serve_refuses_a_bad_address_in_one_line(export_dir: Path, case: str) -> None:
    http, grpc, metrics = free_ports(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", grpc))
        taken.listen(1)
        args = ["--host", "no-such-host.invalid"] if case == "unresolvable-host" else []
        result = subprocess.run([sys.executable, "-m", "spritegen.cli", "serve", str(export_dir), "--provider", "cpu",
                                 "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                                 *args], capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    expected = "is in use" if case == "port-in-use" else "resolve"
    assert result.returncode == 1 and len(lines) == 1 and expected in lines[0], result.stderr[-2000:]


def test_an_export_without_a_fitted_sampler_serves_the_others(export_dir: Path, tmp_path: Path) -> None:
    """The bundled export less its "fast" section: no spritegen_fast model (Triton refuses a request
    to it in one line), nothing fitted published, the client refuses fast before sending, and
    dpmpp is served as in-process."""
    import json

    import numpy as np

    from spritegen.client import Client
    from spritegen.contract import FAST_KEY, MANIFEST_FILE
    from spritegen.errors import InputError
    from spritegen.runtime import Sampler
    from tests.runtime_support import link_export
    from tests.serving_support import post
    from tests.tolerances import BATCHING_ATOL

    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    manifest.pop(FAST_KEY)
    plain = link_export(export_dir, tmp_path / "plain", manifest)
    with running_server(plain, tmp_path) as server, Client(server.url) as client:
        assert set(client.published.samplers) == {"ddim", "ddpm", "dpmpp"} and client.published.fast is None
        with pytest.raises(InputError, match="is not served at .*: its export has no fitted few-step sampler"):
            client.fast(["hero"], seed=1)
        body = json.dumps({"inputs": [{"name": "class_name", "shape": [1, 1], "datatype": "BYTES", "data": ["hero"]}]})
        status, answer = post(server, "/v2/models/spritegen_fast/infer", body.encode())
        assert status >= 400 and "spritegen_fast" in answer["error"] and "\n" not in answer["error"], answer
        served = client.dpmpp(["food"], n=5, seed=2).sprites
    assert np.abs(served - Sampler.load(plain, provider="cpu").dpmpp(["food"], n=5, seed=2)).max() <= BATCHING_ATOL
