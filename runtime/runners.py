"""The three step implementations, each a preallocated workspace for one batch shape.

- `UnetRunner` ("unet"): unet.onnx predicts eps, numpy applies the update (plan.update).
  With guidance the network runs once on 2B rows: the state twice, context then zeros.
- `StepRunner` ("step"): ddpm_step.onnx / ddim_step.onnx do network and update in one
  call; two Bindings ping-pong between two state buffers, so x never moves (on CUDA it
  never leaves the GPU) and no step rebinds anything.
- `LoopRunner` ("loop"): ddim_loop.onnx, the whole deterministic DDIM in one call.

A runner is built once per (implementation, graph, batch, guided) and reused by later
calls of the same shape; one runner serves one call at a time (the Sampler's pool
hands each concurrent call its own). Per call: `start` writes x_T, context and
weights; per step: `step`; at the end: `state` is the unclipped current x.

With CUDA graphs on, each of these runs whole on the graph's device thread
(`Graph.on_device`, runtime/device_thread.py): one hand-over per step, not one per
upload, run and download.
"""

from __future__ import annotations

import numpy as np

from spritegen.runtime.plan import Noise, Step, mix_guidance, update
from spritegen.runtime.session import Graph


def _guided_context(context: np.ndarray, guided: bool) -> np.ndarray:
    """(GB, K): the context rows, then (with guidance) B zero rows for eps(x, t, 0)."""
    return np.concatenate([context, np.zeros_like(context)]) if guided else context


class UnetRunner:
    """eps from unet.onnx, update in numpy (module doc)."""

    def __init__(self, graph: Graph, batch: int, image: tuple[int, ...], classes: int, guided: bool) -> None:
        rows = 2 * batch if guided else batch  # GB
        self.batch, self.guided, self.weight = batch, guided, 0.0
        self.x, self.eps = graph.buffer((rows, *image)), graph.buffer((rows, *image))
        self.t, self.c = graph.buffer((rows,)), graph.buffer((rows, classes))
        self.tmp = np.empty((batch, *image), np.float32)  # scratch for the update
        self.z = np.empty((batch, *image), np.float32)  # the step's noise
        self.binding = graph.bind({"x": self.x, "t": self.t, "c": self.c, "eps": self.eps})
        self._device = graph.on_device

    def start(self, x_T: np.ndarray, context: np.ndarray, weight: float) -> None:
        self._device(self._start, x_T, context, weight)

    def step(self, step: Step, noise: Noise) -> None:
        self._device(self._step, step, noise)

    def state(self) -> np.ndarray:
        return self.x.host[:self.batch]

    def _start(self, x_T: np.ndarray, context: np.ndarray, weight: float) -> None:
        np.copyto(self.x.host[:self.batch], x_T)
        np.copyto(self.c.host, _guided_context(context, self.guided))
        self.c.push()
        self.weight = weight

    def _step(self, step: Step, noise: Noise) -> None:
        eps = self._predict(step.t)
        if step.noisy:
            noise.fill(step.i, self.z)
        update(self.state(), eps, step, self.z if step.noisy else None, self.tmp)

    def _predict(self, t: np.float32) -> np.ndarray:
        """eps (B, C, H, W) of the current state at time t, guidance mixed in."""
        x = self.x.host[:self.batch]  # (B, C, H, W): the state
        self.t.host.fill(t)
        self.t.push()
        if self.guided:
            self.x.host[self.batch:] = x  # rows B..2B-1 see the same state with zero context
        self.x.push()
        self.binding.run()
        eps = self.eps.pull()
        return mix_guidance(eps, self.batch, self.weight) if self.guided else eps[:self.batch]


class StepRunner:
    """One fused step graph per call, ping-ponging between two state buffers (module doc)."""

    def __init__(self, graph: Graph, ddim: bool, batch: int, image: tuple[int, ...], classes: int,
                 guided: bool) -> None:
        self.ddim, self.guided, self.parity = ddim, guided, 0
        shape = (batch, *image)
        self.states = (graph.buffer(shape), graph.buffer(shape))
        self.c = graph.buffer(((2 if guided else 1) * batch, classes))
        self.z = graph.buffer(shape)  # stays zero for deterministic DDIM
        self.i, self.w = graph.buffer((1,), np.int64), graph.buffer((1,))
        shared = {"c": self.c, "i": self.i, "z": self.z, "w": self.w}
        if ddim:
            self.i_prev, self.eta = graph.buffer((1,), np.int64), graph.buffer((1,))
            shared.update({"i_prev": self.i_prev, "eta": self.eta})
        a, b = self.states
        self.bindings = (graph.bind({**shared, "x": a, "x_prev": b}), graph.bind({**shared, "x": b, "x_prev": a}))
        self._device = graph.on_device

    def start(self, x_T: np.ndarray, context: np.ndarray, weight: float, eta: float = 0.0) -> None:
        self._device(self._start, x_T, context, weight, eta)

    def step(self, step: Step, noise: Noise) -> None:
        self._device(self._step, step, noise)

    def state(self) -> np.ndarray:
        return self._device(self.states[self.parity].pull)

    def _start(self, x_T: np.ndarray, context: np.ndarray, weight: float, eta: float) -> None:
        self.parity = 0
        first = self.states[0]
        np.copyto(first.host, x_T)
        first.push()
        np.copyto(self.c.host, _guided_context(context, self.guided))
        self.c.push()
        self.w.host[0] = weight
        self.w.push()
        if self.ddim:
            self.eta.host[0] = eta
            self.eta.push()
            self.z.host.fill(0)  # eta = 0 never fills z: keep it zero, not last call's noise
            self.z.push()

    def _step(self, step: Step, noise: Noise) -> None:
        self.i.host[0] = step.i
        self.i.push()
        if self.ddim:
            self.i_prev.host[0] = step.i_prev
            self.i_prev.push()
        if step.noisy:
            noise.fill(step.i, self.z.host)
            self.z.push()
        self.bindings[self.parity].run()
        self.parity ^= 1


class LoopRunner:
    """ddim_loop.onnx: x_T and context in, clipped sprites out, one call."""

    def __init__(self, graph: Graph, batch: int, image: tuple[int, ...], classes: int, guided: bool) -> None:
        shape = (batch, *image)
        self.guided = guided
        self.x, self.sample = graph.buffer(shape), graph.buffer(shape)
        self.c, self.w = graph.buffer(((2 if guided else 1) * batch, classes)), graph.buffer((1,))
        self.binding = graph.bind({"x": self.x, "c": self.c, "w": self.w, "sample": self.sample})
        self._device = graph.on_device

    def run(self, x_T: np.ndarray, context: np.ndarray, weight: float) -> np.ndarray:
        return self._device(self._run, x_T, context, weight)

    def _run(self, x_T: np.ndarray, context: np.ndarray, weight: float) -> np.ndarray:
        np.copyto(self.x.host, x_T)
        np.copyto(self.c.host, _guided_context(context, self.guided))
        self.w.host[0] = weight
        for buffer in (self.x, self.c, self.w):
            buffer.push()
        self.binding.run()
        return self.sample.pull()
