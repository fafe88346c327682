"""What an operator sets when starting the service, checked up front with one-line errors.

Every bound is a documented default rather than a law of nature; a value outside it is
almost certainly a typo (a queue delay in seconds where microseconds were meant), so it
is refused before anything starts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

from spritegen.errors import InputError
from spritegen.runtime.limits import MAX_BATCH

MAX_BATCH_SIZE = MAX_BATCH  # sprites one Sampler call may hold (the runtime's own batch bound)
MAX_QUEUE_DELAY_US = 1_000_000  # a second of waiting for company is already far too long
MAX_INSTANCES = 64
PROVIDERS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ServeOptions:
    """The service's settings (the CLI's `spritegen serve` options, same names)."""

    host: str = "127.0.0.1"  # loopback by default: exposing the service is a decision
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch_size: int = 32  # sprites Triton may merge into one call
    queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    max_queue_size: int = 256  # requests waiting beyond this are rejected at once (503 / UNAVAILABLE)
    instances: int = 1  # model instances per sampler (threads sharing one Sampler)
    threads: int | None = None  # ONNX Runtime intra-op threads (None: the runtime's default)
    provider: str = "auto"
    precision: str = "fp32"
    spin: bool = False  # ORT threads spin-wait: off, as Triton's own threads share the cores
    exit_timeout_s: int = 30  # on SIGTERM/SIGINT, how long in-flight requests may take to finish
    queue_timeout_s: int = 120  # a request queued longer (or past its own timeout) is rejected, not run

    def __post_init__(self) -> None:
        _check_host(self.host)
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port, "metrics_port": self.metrics_port}
        for name, port in ports.items():
            _check_int(port, name, 1, 65535)
        if len(set(ports.values())) != 3:
            raise InputError(f"the HTTP, gRPC and metrics ports must differ, got {self.http_port}, "
                             f"{self.grpc_port}, {self.metrics_port}")
        _check_int(self.max_batch_size, "max_batch_size", 1, MAX_BATCH_SIZE)
        _check_int(self.queue_delay_us, "queue_delay_us", 0, MAX_QUEUE_DELAY_US)
        _check_int(self.max_queue_size, "max_queue_size", 1, 1_000_000)
        _check_int(self.instances, "instances", 1, MAX_INSTANCES)
        if self.threads is not None:
            _check_int(self.threads, "threads", 1, 1024)
        if self.provider not in PROVIDERS:
            raise InputError(f"unknown provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}")
        _check_int(self.exit_timeout_s, "exit_timeout_s", 1, 3600)
        _check_int(self.queue_timeout_s, "queue_timeout_s", 1, 3600)

    def describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def _check_int(value: object, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        flag = "--" + name.replace("_", "-")
        raise InputError(f"{flag} must be an integer in {low}..{high}, got {value!r}")


def _check_host(host: object) -> None:
    if not isinstance(host, str) or not host:
        raise InputError(f"--host must be an IP address or host name, got {host!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost" and not all(part.isalnum() or "-" in part for part in host.split(".")):
            raise InputError(f"--host {host!r} is neither an IP address nor a host name") from None
