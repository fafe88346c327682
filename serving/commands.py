"""The bodies of `spritegen serve` and `spritegen triton-repo` (registered in spritegen.cli).

Options are plain typer options without typer-side bounds: ServeOptions checks them
all and refuses bad values with one line (exit 1), as every other spritegen error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from spritegen.serving.options import ServeOptions

SOURCE_HELP = ("Export directory, or a W&B export artifact wandb:ENTITY/PROJECT/NAME:ALIAS "
               "(default: a cached export of the bundled model).")


def serve(
    export: Optional[str] = typer.Argument(None, envvar="SPRITEGEN_EXPORT_DIR", help=SOURCE_HELP, show_default=False),
    host: str = typer.Option(ServeOptions.host, help="Address to bind (loopback by default)."),
    http_port: int = typer.Option(ServeOptions.http_port, help="HTTP (KServe v2) port."),
    grpc_port: int = typer.Option(ServeOptions.grpc_port, help="gRPC (KServe v2) port."),
    metrics_port: int = typer.Option(ServeOptions.metrics_port, help="Prometheus metrics port."),
    max_batch_size: int = typer.Option(ServeOptions.max_batch_size, help="Sprites merged into one sampler call."),
    queue_delay_us: int = typer.Option(ServeOptions.queue_delay_us, help="Dynamic batching: microseconds a "
                                       "request may wait for others to batch with."),
    max_queue_size: int = typer.Option(ServeOptions.max_queue_size, help="Requests queued beyond this are "
                                       "rejected at once (HTTP 503 / gRPC UNAVAILABLE)."),
    instances: int = typer.Option(ServeOptions.instances, help="Model instances per sampler (threads sharing "
                                  "the sessions)."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads (default: all cores)."),
    provider: str = typer.Option(ServeOptions.provider, help="auto (CUDA if available), cuda or cpu."),
    precision: str = typer.Option(ServeOptions.precision, help="Network precision: fp32, fp16 or int8."),
    spin: bool = typer.Option(ServeOptions.spin, "--spin/--no-spin", metavar="",
                              help="ORT threads spin-wait between ops."),
    exit_timeout: int = typer.Option(ServeOptions.exit_timeout_s, help="Seconds in-flight requests get to "
                                     "finish on SIGTERM/Ctrl-C."),
    queue_timeout: int = typer.Option(ServeOptions.queue_timeout_s, help="Seconds a request may wait in the "
                                      "queue (less if its client's timeout is shorter); then it is rejected "
                                      "unrun."),
) -> None:
    """Serve sprites (DDIM, DDPM, DPM-Solver++ and the export's fitted sampler) on Triton Inference Server
    (KServe v2 over HTTP and gRPC)."""
    from spritegen.cli_options import errors
    from spritegen.cache import default_export
    from spritegen.runtime import Sampler
    from spritegen.serving import server
    from spritegen.serving.schema import MODELS, fast_section, served

    with errors(), server.sigterm_interrupts():
        options = ServeOptions(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                               max_batch_size=max_batch_size, queue_delay_us=queue_delay_us,
                               max_queue_size=max_queue_size, instances=instances, threads=threads,
                               provider=provider, precision=precision, spin=spin, exit_timeout_s=exit_timeout,
                               queue_timeout_s=queue_timeout)
        source = export if export else default_export()
        sampler = Sampler.load(source, provider=provider, threads=threads, spin=spin, precision=precision,
                               open_all=True)
        try:
            service = server.start(sampler, options)
        except KeyboardInterrupt:
            typer.echo("stopped while starting", err=True)
            return
        models = [MODELS[kind] for kind in served(fast_section(sampler.manifest.fast))]
        typer.echo(f"serving {', '.join(models)} from {sampler.manifest.directory} on "
                   f"http://{host}:{http_port} (gRPC {host}:{grpc_port}, metrics http://{host}:{metrics_port}"
                   "/metrics); SIGTERM or Ctrl-C stops", err=True)
        server.serve_forever(service)
        typer.echo("stopped", err=True)


def triton_repo(
    export: Path = typer.Argument(..., help="Export directory (from spritegen-export)."),
    out: Path = typer.Argument(..., help="Model repository to create (must not exist)."),
    max_batch_size: int = typer.Option(ServeOptions.max_batch_size, help="max_batch_size of the batchable network model."),
    queue_delay_us: int = typer.Option(ServeOptions.queue_delay_us, help="Dynamic batching delay of the network model."),
    max_queue_size: int = typer.Option(ServeOptions.max_queue_size, help="Queue bound of the network model."),
    instances: int = typer.Option(ServeOptions.instances, help="Instances per device."),
    kind: str = typer.Option("gpu", help="Instance kind: gpu or cpu."),
) -> None:
    """Write a Triton model repository (ONNX Runtime backend): the DDIM loop graph and the network."""
    from spritegen.cli_options import errors
    from spritegen.serving.repository import REPO_GRAPHS, RepoOptions, model_name, write_repository

    with errors():
        options = RepoOptions(max_batch_size=max_batch_size, queue_delay_us=queue_delay_us,
                              max_queue_size=max_queue_size, instances=instances, kind=kind)
        written = write_repository(export, out, options)
        typer.echo(f"wrote {written} ({', '.join(model_name(g) for g in REPO_GRAPHS)}); serve it with "
                   f"tritonserver --model-repository {written}")
