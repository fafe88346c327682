"""Start and stop a real `spritegen serve` (Triton via PyTriton) on 127.0.0.1 for tests.

Every server runs as its own process (`python -m spritegen.cli serve ...`, the user's
command) on free loopback ports, is waited for with a bounded readiness loop, and is
stopped by the test that started it (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, ExitStack
from dataclasses import dataclass
from pathlib import Path

from spritegen.client import Client
from spritegen.runtime import load_manifest
from spritegen.serving.schema import FITTED, MODELS, SAMPLERS
from spritegen.serving.watchdog import descendants

STARTUP_S = 90.0  # Triton starts in ~3.5 s on a quiet 2-core machine; a busy one is far slower
STOP_S = 30.0
STARTED_BOUND_S = 300  # a bound on a hang for waits on the server; no test depends on reaching it


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel says are free now (held open together while chosen)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@dataclass
class Server:
    process: subprocess.Popen
    http: int
    grpc: int
    metrics: int
    log: Path
    fitted: bool = True  # whether its export has a fitted few-step sampler (serves FITTED)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc}"

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as response:
            return response.read().decode()

    def ready(self) -> bool:
        """Every model it serves loaded (the server's own readiness comes before PyTriton binds
        them; the fitted sampler's model only where the export has one)."""
        try:
            for model in (MODELS[kind] for kind in SAMPLERS if kind != FITTED or self.fitted):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/models/{model}/ready",
                                            timeout=2) as response:
                    if response.status != 200:
                        return False
            return True
        except OSError:
            return False

    def rss_kib(self) -> int:
        """Resident memory of the server process and its children (tritonserver, stub), KiB."""
        return sum(_rss(pid) for pid in [self.process.pid, *descendants(self.process.pid)])

    def peak_rss_kib(self) -> int:
        """Peak resident memory (VmHWM) of the server process and its children, KiB."""
        return sum(_rss(pid, "VmHWM:") for pid in [self.process.pid, *descendants(self.process.pid)])

    def stop(self) -> int:
        """SIGTERM, wait (bounded), SIGKILL the group if still alive; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=STOP_S)


@contextmanager
def running_server(export_dir: Path, log_dir: Path, *options: str) -> Iterator[Server]:
    """A `spritegen serve export_dir` with `options` on free ports, ready, stopped on exit."""
    http, grpc, metrics = free_ports(3)
    log = log_dir / f"serve-{http}.log"
    command = [sys.executable, "-m", "spritegen.cli", "serve", str(export_dir), "--http-port", str(http),
               "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--provider", "cpu", "--threads", "1",
               *options]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, http, grpc, metrics, log, fitted=load_manifest(export_dir).fast is not None)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not server.ready():
            if process.poll() is not None:
                raise RuntimeError(f"spritegen serve exited with {process.returncode}: {log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"spritegen serve not ready after {STARTUP_S} s: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def _rss(pid: int, field: str = "VmRSS:") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def trickling_server(every_s: float = 0.2) -> Iterator[int]:
    """A raw socket server on 127.0.0.1 that answers any request with a 200 promising a
    megabyte, then sends one byte every `every_s` seconds (a body that never finishes);
    its port. Stopped (and its connections closed) on exit."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.wait(every_s):
                    conn.sendall(b" ")
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()


def published_config(max_batch_size: int = 32, fast: dict | None = None) -> dict:
    """A model config as `spritegen serve` publishes it for the course's model and schedule
    (`fast`: the export's fitted sampler as serving.schema.fast_section writes it, or none)."""
    from spritegen.contract import CLASS_NAMES, ModelConfig, ScheduleConfig
    from spritegen.serving.schema import published, schema

    io = schema(ModelConfig(), ScheduleConfig.timesteps)
    parameters = published(io, CLASS_NAMES, max_batch_size, fast)
    return {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}


@contextmanager
def foreign_server(outputs: list[dict], fast: dict | None = None) -> Iterator[int]:
    """A server on 127.0.0.1 that publishes the course's schema (with `fast`, see published_config)
    but answers every inference with `outputs` (KServe v2 JSON tensors): a server that does not
    serve what it says; its port."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(published_config(fast=fast) if self.path.endswith("/config") else {})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send({"model_name": "spritegen_ddim", "outputs": outputs})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------ observing a running server
def counters(server: Server, model: str = "spritegen_ddim") -> dict[str, float]:
    """Triton's Prometheus counters for `model`: success, failure (all reasons), executions."""
    text = server.metrics_text()
    def total(metric: str) -> float:
        return sum(float(v) for v in re.findall(rf'^{metric}{{[^}}]*model="{model}"[^}}]*}} (\S+)$', text, re.M))
    return {"success": total("nv_inference_request_success"), "failure": total("nv_inference_request_failure"),
            "executions": total("nv_inference_exec_count")}


def counted(server: Server, before: dict[str, float], model: str = "spritegen_ddim", **deltas: float) -> dict[str, float]:
    """`counters` once each named counter has grown by at least its delta since `before`.
    Triton counts a request after its response is on its way, so a client holding every answer
    can read the counters before they move: this waits (bounded) for the counts the caller
    expects, and the caller asserts them exactly (a count past the expected one still fails)."""
    deadline = time.monotonic() + STARTED_BOUND_S
    while True:
        now = counters(server, model)
        if all(now[name] - before[name] >= delta for name, delta in deltas.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.01)


@contextmanager
def holding(server: Server, kind: str = "ddim") -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A pool whose first job is a long `kind` request the service reports in flight: requests
    to that sampler submitted inside queue behind it (its model has one instance). Waits for all on exit."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        long = pool.submit(one, server, "hero", 1, kind=kind, n=500, guidance=1.0)  # 1,000 network calls
        wait_in_flight(server, long, model=f"spritegen_{kind}")
        yield pool
        assert not long.done(), "the long request finished before the others were queued"
        assert long.result(timeout=STARTED_BOUND_S).sprites.shape == (1, 3, 16, 16)


def wait_queued(server: Server, count: int, model: str = "spritegen_ddim") -> None:
    """Until Triton reports `count` requests of `model` queued (pending, not executing)."""
    deadline = time.monotonic() + STARTED_BOUND_S
    pattern = rf'^nv_inference_pending_request_count{{model="{model}"[^}}]*}} (\S+)$'
    while float(re.search(pattern, server.metrics_text(), re.M).group(1)) < count:
        assert time.monotonic() < deadline, f"{count} requests never queued"
        time.sleep(0.01)


def one(server: Server, context: str, seed: int, kind: str = "ddim", **params):
    with Client(server.url) as c:  # tritonclient's HTTP client is one per thread
        return getattr(c, kind)([context], seed=seed, **params)


def post(server: Server, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{server.url}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ours(server: Server) -> dict[str, float]:
    """The service's own metrics (serving.metrics), series -> value."""
    with urllib.request.urlopen(f"http://{server.url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def wait_in_flight(server: Server, pending: concurrent.futures.Future, model: str = "spritegen_ddim") -> None:
    """Until the service's /metrics gauge says a request to `model` is being computed."""
    deadline = time.monotonic() + STARTED_BOUND_S
    while ours(server).get(f'spritegen_in_flight{{model="{model}"}}', 0) < 1:
        assert not pending.done(), "the request finished before the service reported it in flight"
        assert time.monotonic() < deadline, "the service never reported the request in flight"
        time.sleep(0.005)
