"""The validation probe set and the runners that evaluate one file on it.

Probes cover what a sampler feeds the network: batch 1 and 7, times across 1..T
(both ends included), one-hot, blended and zero (unconditional) contexts. They are
drawn from a fixed seed, so every export is validated on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from spritegen.contract import CLASS_NAMES, ModelConfig, ScheduleConfig

PROBE_SEED = 20261127
PROBE_STEPS = (1, 2, 20, 137, 250, 499, 500)  # step indices i; the network sees t = i/T
BLEND = {"hero": 1.0, "food": 0.6}  # the seed's "mixed samples" example


@dataclass(frozen=True)
class Probe:
    """One network input: x (B, C, H, W), t (B,), c (B, K), float32."""

    x: torch.Tensor
    t: torch.Tensor
    c: torch.Tensor

    def feed(self) -> dict[str, np.ndarray]:
        return {"x": self.x.numpy(), "t": self.t.numpy(), "c": self.c.numpy()}


def contexts(config: ModelConfig, batch: int) -> torch.Tensor:
    """(batch, K): the one-hots, then a blend, then zeros, repeated to fill the batch."""
    rows = list(torch.eye(config.n_cfeat))
    blend = torch.zeros(config.n_cfeat)
    for name, weight in BLEND.items():
        if CLASS_NAMES.index(name) < config.n_cfeat:
            blend[CLASS_NAMES.index(name)] = weight
    rows += [blend, torch.zeros(config.n_cfeat)]
    return torch.stack([rows[k % len(rows)] for k in range(batch)])


def probe_set(config: ModelConfig, schedule: ScheduleConfig) -> list[Probe]:
    """Batch 7 probes (every context kind, a different t per row) and batch 1 probes per t."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    shape = (config.in_channels, config.height, config.height)
    steps = [min(i, schedule.timesteps) for i in PROBE_STEPS]
    probes = []
    for shift in range(2):
        t = torch.tensor([steps[(k + shift) % len(steps)] / schedule.timesteps for k in range(7)])
        probes.append(Probe(torch.randn((7, *shape), generator=generator), t.float(), contexts(config, 7)))
    cycle = contexts(config, config.n_cfeat + 2)[config.n_cfeat - 1:]  # one-hot, blend, zeros
    for k, i in enumerate(steps):
        probes.append(Probe(torch.randn((1, *shape), generator=generator),
                            torch.tensor([i / schedule.timesteps]).float(), cycle[k % len(cycle)][None]))
    return probes


VALIDATION_THREADS = 1  # spinning thread pools collapse (25x here) when other jobs share the cores


def ort_session(path: Path) -> ort.InferenceSession:
    """A CPU session with full graph optimisation, as a user would open it, on one thread."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no NCHWc / shape-merge chatter
    options.intra_op_num_threads = options.inter_op_num_threads = VALIDATION_THREADS
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_ort(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The single output of `session` for `feed`."""
    return session.run(None, feed)[0]
