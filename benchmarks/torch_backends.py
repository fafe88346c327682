"""PyTorch rows: eager (the reference samplers, what a course user runs), TorchScript, and
on CUDA the same with CUDA graphs. Every sampler figure goes through
`spritegen.export.reference`, so the step math is the oracle's and only the network
call differs between these rows.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.backends import Setup, Unavailable, Work, export_file, model_config, schedule_config
from spritegen.contract import TORCHSCRIPT_FILE
from spritegen.export.checkpoint import load_model
from spritegen.export.reference import sample_ddim, sample_ddpm


class OnDevice(nn.Module):
    """Moves t to the model's device: the reference samplers build t on the CPU (as the
    course does before its `.to(device)`), which a CUDA model cannot take."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, t.to(self.device, non_blocking=True), c)


class CudaGraphed(nn.Module):
    """One CUDA graph per input shape: inputs are copied into static buffers, the graph
    replays the whole network, the output is cloned out (the sampler may keep it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}

    def _capture(self, inputs: list[torch.Tensor]) -> tuple:
        static = [i.clone() for i in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs requires
                self.model(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            out = self.model(*static)
        return graph, static, out

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            c = torch.zeros(x.shape[0], self.model.n_cfeat, device=x.device)
        inputs = [x, t.to(x.device, non_blocking=True), c]
        key = tuple(tuple(i.shape) for i in inputs)
        if key not in self.graphs:
            self.graphs[key] = self._capture(inputs)
        graph, static, out = self.graphs[key]
        for buffer, value in zip(static, inputs):
            buffer.copy_(value)
        graph.replay()
        return out.clone()


class TorchRunner:
    """Prepared figures for one torch module on one device (benchmarks.backends.Runner)."""

    def __init__(self, model: nn.Module, device: str, setup: Setup, info: dict) -> None:
        self.device = torch.device(device)
        self.model, self._info = model, info
        self.config = model_config(setup.export_dir)
        s = schedule_config(setup.export_dir)
        self.schedule = {"timesteps": s.timesteps, "beta1": s.beta1, "beta2": s.beta2}
        self.generator = torch.Generator().manual_seed(0)

    def _inputs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x_T (B, C, H, W) and one-hot context rows (B, K) for class 0, on the device."""
        cfg = self.config
        noise = torch.randn(batch, cfg.in_channels, cfg.height, cfg.height, generator=self.generator)
        context = torch.zeros(batch, cfg.n_cfeat)
        context[:, 0] = 1
        return noise.to(self.device), context.to(self.device)

    def net(self, batch: int) -> Work:
        x, c = self._inputs(batch)
        t = torch.full((batch,), 0.5, device=self.device)

        def call() -> None:
            with torch.inference_mode():
                self.model(x, t, c)
        return call

    def ddim(self, batch: int, n: int) -> Work:
        noise, context = self._inputs(batch)
        return lambda: sample_ddim(self.model, noise, context, n=n, **self.schedule)

    def ddpm(self, batch: int) -> Work:
        noise, context = self._inputs(batch)
        if self.device.type == "cpu":
            return lambda: sample_ddpm(self.model, noise, context, generator=self.generator, **self.schedule)
        # the reference draws step noise on the CPU; on CUDA inject it, drawn on the device once
        steps = torch.randn(self.schedule["timesteps"], *noise.shape, device=self.device)
        return lambda: sample_ddpm(self.model, noise, context, step_noise=steps, **self.schedule)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def info(self) -> dict:
        return {"torch": torch.__version__, "threads": torch.get_num_threads(), **self._info}


def _prepare(setup: Setup, device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable(f"torch {torch.__version__} sees no CUDA device")
    if setup.threads:
        torch.set_num_threads(setup.threads)


def eager(setup: Setup, device: str) -> TorchRunner:
    """The course user's path: the eager module and the reference samplers."""
    _prepare(setup, device)
    model = load_model(setup.checkpoint).eval().to(device)
    wrapped = OnDevice(model, torch.device(device)) if device != "cpu" else model
    return TorchRunner(wrapped, device, setup, {"device": device, "source": setup.checkpoint or "bundled demo"})


def torchscript(setup: Setup, device: str) -> TorchRunner:
    """The exported unet.ts under the same reference samplers."""
    _prepare(setup, device)
    path = export_file(setup, TORCHSCRIPT_FILE)
    module = torch.jit.load(str(path), map_location=device).eval()
    wrapped = OnDevice(module, torch.device(device)) if device != "cpu" else module
    return TorchRunner(wrapped, device, setup, {"device": device, "file": str(path)})


def cuda_graph(setup: Setup, device: str) -> TorchRunner:
    """Eager CUDA with each network call replayed from a captured CUDA graph."""
    _prepare(setup, device)
    if device != "cuda":
        raise Unavailable("CUDA graphs need a CUDA device")
    model = load_model(setup.checkpoint).eval().to(device)
    return TorchRunner(CudaGraphed(model), device, setup, {"device": device, "cuda_graph": True})
