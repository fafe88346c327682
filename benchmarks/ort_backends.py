"""ONNX Runtime rows, through the product itself: `spritegen.runtime.Sampler` for the
samplers (each step implementation) and the runtime's own `Graph`/`Binding` for one
network call, so the session options measured are exactly the ones users get.
Imports numpy and onnxruntime only: the worker's memory figure is the runtime's.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from benchmarks.backends import Setup, Unavailable, Work
from spritegen.contract import UNET_FILES
from spritegen.runtime import Sampler, load_manifest
from spritegen.runtime.session import Graph

_CUDA = "CUDAExecutionProvider"


class SamplerRunner:
    """Prepared figures for one Sampler and one step implementation (benchmarks.backends.Runner)."""

    def __init__(self, sampler: Sampler, impl: str) -> None:
        self.sampler, self.impl = sampler, impl
        self.rng = np.random.default_rng(0)
        self._unet: Graph | None = None

    def _inputs(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """x_T (B, C, H, W) and one-hot context rows (B, K) for the first class."""
        noise = self.rng.standard_normal((batch, *self.sampler.image_shape), dtype=np.float32)
        return noise, self.sampler.context([self.sampler.class_names[0]] * batch)

    def net(self, batch: int) -> Work | None:
        """One call of the sampler's network file (unet.onnx, or unet_int8.onnx for int8) with
        IO bound once: the runtime's per-step network cost."""
        if self.impl != "unet":
            return None  # the same unet graph: one row reports it
        if self._unet is None:
            manifest = self.sampler.manifest
            model = manifest.read_file(UNET_FILES[self.sampler.precision])
            self._unet = Graph("unet", model, cuda=self.sampler.cuda,
                               threads=self.sampler.threads, cuda_graph=self.sampler.cuda_graph,
                               spin=self.sampler.spin)
        shape = (batch, *self.sampler.image_shape)
        noise, context = self._inputs(batch)
        buffers = {"x": self._unet.buffer(shape), "t": self._unet.buffer((batch,)),
                   "c": self._unet.buffer(context.shape), "eps": self._unet.buffer(shape)}
        np.copyto(buffers["x"].host, noise)
        buffers["t"].host.fill(0.5)
        np.copyto(buffers["c"].host, context)
        for name in ("x", "t", "c"):
            buffers[name].push()
        return self._unet.bind(buffers).run

    def ddim(self, batch: int, n: int) -> Work | None:
        if self.impl == "loop" and n != self.sampler.manifest.ddim_loop_steps:
            return None
        noise, context = self._inputs(batch)
        return lambda: self.sampler.ddim(context, n=n, noise=noise, impl=self.impl)

    def ddpm(self, batch: int) -> Work | None:
        if self.impl == "loop":
            return None
        noise, context = self._inputs(batch)
        return lambda: self.sampler.ddpm(context, noise=noise, seed=0, impl=self.impl)

    def sync(self) -> None:
        """Nothing to do: the sampler returns host arrays, and run() syncs the provider."""

    def info(self) -> dict:
        return {"onnxruntime": ort.__version__, "provider": self.sampler.provider, "impl": self.impl,
                "precision": self.sampler.precision,
                "threads": self.sampler.threads, "spin": self.sampler.spin,
                "cuda_graph": self.sampler.cuda and self.sampler.cuda_graph}


def sampler(setup: Setup, device: str, impl: str, precision: str = "fp32", cuda_graph: bool = True) -> SamplerRunner:
    """The runtime's Sampler on `device` with step implementation `impl` and network `precision`
    (on CUDA, with or without CUDA graphs)."""
    if device == "cuda" and _CUDA not in ort.get_available_providers():
        raise Unavailable(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                          "(install onnxruntime-gpu; see docs/benchmarks.md)")
    if UNET_FILES[precision] not in load_manifest(setup.export_dir).sha256:
        raise Unavailable(f"the export has no {UNET_FILES[precision]} (spritegen-export --{precision})")
    s = Sampler.load(setup.export_dir, provider=device, threads=setup.threads, impl=impl, spin=setup.ort_spin,
                     precision=precision, cuda_graph=cuda_graph)
    if impl == "loop" and not s.manifest.has("ddim_loop"):
        raise Unavailable("the export has no ddim_loop.onnx")
    return SamplerRunner(s, impl)
