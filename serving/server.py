"""Run Triton with the Sampler inside: start, bind every sampler, serve until a signal.

The service is three parts: Triton (gRPC and metrics on the operator's address, HTTP on a
private loopback port), the bounded HTTP gate on the operator's HTTP port (serving.gate),
and a watchdog that kills Triton and its stubs if this process dies (serving.watchdog).
Host and ports are checked first (serving.preflight).

PyTriton starts a real `tritonserver` whose Python-backend stub loads
`libpython3.X.so` by name. Where Python is not the system's (pyenv, conda, a venv on
another build) the loader can find the system's libpython first and the model fails to
load; so the running interpreter's LIBDIR goes first on the LD_LIBRARY_PATH the server
is spawned with (set in our environment for the start only: PyTriton copies it then).

Shutdown: SIGTERM and SIGINT stop the server the way Triton stops: it refuses new
requests, waits up to `exit_timeout_s` for the in-flight ones, which our inference
threads finish, then exits; the process then returns normally (exit status 0).
"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spritegen.errors import SpriteGenError
from spritegen.runtime import Sampler
from spritegen.serving import preflight, pytriton_patch
from spritegen.serving.binding import make_infer
from spritegen.serving.gate import Bounds, Gate
from spritegen.serving.metrics import METRICS
from spritegen.serving.options import ServeOptions
from spritegen.serving.schema import (MODELS, PUBLISHED, Field, Schema, fast_section, published,
                                      read_published, schema)
from spritegen.serving.watchdog import Watchdog, descendants


def libpython_dir() -> str | None:
    """The directory holding this interpreter's libpython (None for a static build)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY")
    if libdir and library and (Path(libdir) / library).exists():
        return str(libdir)
    return None


@contextmanager
def stub_library_path() -> Iterator[None]:
    """LD_LIBRARY_PATH with this interpreter's LIBDIR first, for processes spawned inside."""
    libdir, before = libpython_dir(), os.environ.get("LD_LIBRARY_PATH")
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = libdir + (os.pathsep + before if before else "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


def serving_schema(sampler: Sampler) -> Schema:
    return schema(sampler.manifest.model, sampler.timesteps)


@dataclass
class Service:
    """A started service: Triton, the HTTP gate in front of it, the watchdog behind it."""

    triton: Any  # pytriton.triton.Triton
    gate: Gate
    watchdog: Watchdog

    def stop(self) -> None:
        """Triton first (it drains in-flight requests, whose answers still pass the gate)."""
        try:
            self.triton.stop()
        finally:
            self.gate.stop()
            self.watchdog.close()


def start(sampler: Sampler, options: ServeOptions) -> Service:
    """A running Service serving MODELS from `sampler` (the caller stops it)."""
    try:
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise SpriteGenError(f"serving needs the serve extra ({exc.name} is missing): "
                             "pip install 'spritegen[serve]'") from None
    address = preflight.resolve(options.host)
    listener = preflight.listen(address, options.http_port, "--http-port")
    try:
        preflight.check_free(address, options.grpc_port, "--grpc-port")
        preflight.check_free(address, options.metrics_port, "--metrics-port")
    except BaseException:
        listener.close()
        raise
    upstream = preflight.loopback_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=upstream, grpc_address=address,
                          grpc_port=options.grpc_port, metrics_address=address,
                          metrics_port=options.metrics_port, exit_timeout_secs=options.exit_timeout_s,
                          log_verbose=0)
    pytriton_patch.apply()
    io = serving_schema(sampler)
    service = Service(Triton(config=config), Gate(listener, upstream, Bounds.of(io, options.max_batch_size)),
                      Watchdog())
    try:
        _bind(service.triton, sampler, io, options)
        with stub_library_path():
            service.triton.run()
        service.watchdog.guard([pid for pid in descendants(os.getpid()) if pid != service.watchdog.process.pid])
        service.gate.start()
    except BaseException:  # a failed bind, or SIGTERM/Ctrl-C while starting: leave nothing running
        service.stop()
        listener.close()
        raise
    return service


def _bind(triton: Any, sampler: Sampler, io: Schema, options: ServeOptions) -> None:
    """One Triton model per served sampler (serving.schema.served: the fitted one only when the
    export has it), its inputs and outputs from the schema, what it publishes from the export."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, TimeoutAction

    # A request waits in the queue at most its own timeout (tritonclient sends the client's), else
    # queue_timeout_s: a request whose client gave up is rejected there, never computed.
    policy = QueuePolicy(max_queue_size=options.max_queue_size, timeout_action=TimeoutAction.REJECT,
                         default_timeout_microseconds=options.queue_timeout_s * 1_000_000,
                         allow_timeout_override=True)
    batcher = DynamicBatcher(max_queue_delay_microseconds=options.queue_delay_us, default_queue_policy=policy)
    parameters = published(io, tuple(sampler.class_names), options.max_batch_size, fast_section(sampler.manifest.fast))
    facts = read_published(parameters[PUBLISHED])
    for kind in facts.samplers:
        pytriton_patch.publish(MODELS[kind], parameters)
        triton.bind(
            model_name=MODELS[kind], infer_func=[make_infer(sampler, kind, facts, options.max_batch_size)] * options.instances,
            inputs=[_tensor(f, optional=True) for f in io.inputs_of(kind)],
            outputs=[_tensor(f) for f in io.outputs],
            config=ModelConfig(max_batch_size=options.max_batch_size, batcher=batcher),
            strict=True,
        )


def _tensor(field: Field, **extra: bool) -> Any:
    from pytriton.model_config import Tensor

    return Tensor(name=field.name, dtype=bytes if field.is_bytes else field.dtype.type, shape=field.shape, **extra)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does, so both take the same orderly path:
    PyTriton's serve loop stops the server on it, and startup cleans up on it."""
    def interrupt(signum: int, frame: object) -> None:
        # the in-flight count as the service saw it at the signal (what tests wait on, not time)
        sys.stderr.write(f"stopping: {METRICS.in_flight()} request(s) in flight finish first\n")
        sys.stderr.flush()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(service: Service) -> None:
    """Block until SIGTERM/SIGINT (inside sigterm_interrupts) or the server dies, then stop
    gracefully: Triton drains the in-flight requests first (module doc)."""
    try:
        service.triton.serve()
    finally:
        service.stop()
