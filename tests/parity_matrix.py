"""The parity matrix as data: one table of cases, the driver of every exported path, and
the errors each path measures against the eager reference samplers.

Shared by tests/test_parity.py (which asserts a tolerance per measurement) and
tests/parity_table.py (which writes the measured errors to docs/parity.md), so
the table that documents parity is the table that is tested.

A case fixes a checkpoint, a sampler (DDPM-T, DDIM-n or DPM-Solver++-n), a batch, a context kind,
guidance and eta; it names the paths that run it. Every path and the reference get
the same x_T and the same per-step noise (`step_noise[i-1]` is the noise of the step
starting at i). Three quantities are measured, each as max |path - reference|:

- "eps": per call. The reference's network calls (all of a chain up to REPLAY_CALLS
  steps, an even sample with both ends of a longer one) are replayed through the
  path on the reference's own input (unet.ts, unet.onnx, unet_fp16.onnx: eps; the
  step graphs: one step from the reference's state x_i to x_prev), so the error is
  the path's own, free of accumulation. ddim_loop.onnx has no per-call output.
- "trajectory": every intermediate (the unclipped state after every step).
- "final": the clipped sprites.

Paths: "torchscript" and "unet_fp16" are network files, driven by the reference
sampler itself with the network swapped; "unet", "ddpm_step", "ddim_step",
"solver_step" and "ddim_loop" are the runtime (`Sampler`, impl "unet" / "step" / "loop").
"""

from __future__ import annotations

import time
import zlib
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from spritegen.contract import (CLASS_NAMES, FP16_UNET_FILE, GRAPHS, TORCHSCRIPT_FILE, ddim_pairs, dpmpp_indices,
                                solver_triples)
from spritegen.export.reference import sample_ddim, sample_ddpm, sample_dpmpp
from spritegen.runtime import Sampler

PATHS = ("torchscript", "unet", "ddpm_step", "ddim_step", "solver_step", "ddim_loop", "unet_fp16")
QUANTITIES = ("eps", "trajectory", "final")
RUNTIME_IMPL = {"unet": "unet", "ddpm_step": "step", "ddim_step": "step", "solver_step": "step", "ddim_loop": "loop"}
FP16_PATHS = ("unet_fp16",)
NETWORK_PATHS = ("torchscript", "unet_fp16")  # network files driven by the reference sampler (run_path)
FP16_CHAIN_MAX_GUIDANCE = 2.0  # fp16 chains are compared end to end up to this guidance (quantities)

# Blends cycled through for "blend" rows: the seed's example, an even pair, a triple.
BLENDS: tuple[dict[str, float], ...] = (
    {"hero": 1.0, "food": 0.6},
    {"spell": 0.5, "side-facing": 0.5},
    {"non-hero": 0.3, "food": 0.3, "spell": 0.3},
)


@dataclass(frozen=True)
class Case:
    """One row of the matrix (module doc)."""

    checkpoint: str  # "bundled" (the demo), "course" (course format: no shortcut, run config) or "tiny" (n_feat 8)
    sampler: str  # "ddpm" (T steps), "ddim" or "dpmpp" (DPM-Solver++ 2M over contract.dpmpp_indices)
    n: int  # DDIM steps / DPM-Solver++ calls; T for DDPM
    batch: int
    context: str  # "one-hot", "blend", "zero" or "mixed" (all three kinds, cycled over rows)
    guidance: float  # classifier-free guidance weight, 0 = off
    eta: float  # DDIM / DPM-Solver++ eta, 0 = deterministic; > 0 gets injected step noise
    paths: tuple[str, ...]

    @property
    def id(self) -> str:
        sampler = "ddpm500" if self.sampler == "ddpm" else f"{self.sampler}{self.n}"
        return f"{self.checkpoint}-{sampler}-b{self.batch}-{self.context}-g{self.guidance:g}-eta{self.eta:g}"

    @property
    def noisy(self) -> bool:
        """Whether steps add noise (DDPM, stochastic DDIM): then step_noise is injected."""
        return self.sampler == "ddpm" or self.eta > 0

    def quantities(self, path: str) -> tuple[str, ...]:
        """What `path` is compared on: the loop graph has one call and no intermediates; the
        network files are compared per call on DDPM chains (see below), strongly guided fp16
        DDIM too."""
        if path == "ddim_loop":
            return ("final",)
        if path in NETWORK_PATHS and self.sampler == "ddpm":
            # A network file's chain is the reference sampler's own code with the network swapped:
            # per call on 64 states spread over the 500 steps (both ends) it is compared as a
            # network, and its chains are compared end to end in the DDIM and DPM-Solver++ cases.
            # (fp16 DDPM could not be held to a chain bound anyway: its 500 noisy steps amplify
            # fp16 rounding chaotically, measured: 3 of 30 sprites drift by up to 0.89 at batch 30.)
            return ("eps",)
        if path in FP16_PATHS and self.guidance > FP16_CHAIN_MAX_GUIDANCE:
            # guidance scales a chain's errors up to (1 + 2w)-fold (measured: 1.26 on DDIM-25 at
            # w = 3, batch 30), so there fp16 is held to per-call parity on every reference state,
            # and end to end for DDIM with w <= FP16_CHAIN_MAX_GUIDANCE only.
            return ("eps",)
        return QUANTITIES


_DDPM = ("torchscript", "unet", "ddpm_step", "unet_fp16")
_DDIM = ("torchscript", "unet", "ddim_step", "unet_fp16")
_LOOP = ("ddim_loop",)  # deterministic DDIM with the export's ddim_loop_steps (25)
_DPMPP = ("unet", "solver_step")  # the runtime's DPM-Solver++ paths (the network files meet DDIM and DDPM above)

# The covering design (docs/parity.md explains it): every path x every sampler it
# runs, and per path every batch size, guidance on and off, eta on and off (DDIM
# paths but the loop, which is deterministic by contract), every context kind.
CASES: tuple[Case, ...] = (
    Case("bundled", "ddim", 25, 7, "mixed", 0.0, 0.0, _DDIM + _LOOP),
    Case("bundled", "ddim", 25, 1, "one-hot", 2.0, 0.0, _DDIM + _LOOP),
    Case("bundled", "ddim", 7, 7, "mixed", 1.5, 0.5, _DDIM),  # 7 does not divide T
    Case("bundled", "ddim", 50, 1, "blend", 0.0, 1.0, _DDIM),
    Case("bundled", "ddim", 500, 1, "zero", 0.0, 0.0, _DDIM),
    Case("bundled", "ddim", 25, 30, "mixed", 3.0, 0.0, _DDIM + _LOOP),
    Case("bundled", "ddpm", 500, 1, "one-hot", 2.0, 0.0, _DDPM),
    # DDPM-500 at batch 30: 500 calls of 30 rows per path, on the tiny model (an eighth of the
    # features: the same graphs, ops and batch handling at a small fraction of the cost; the trained
    # and course checkpoints run DDPM-500 at batch 1 and 7 above and below)
    Case("tiny", "ddpm", 500, 30, "mixed", 0.0, 0.0, _DDPM),
    Case("course", "ddim", 25, 7, "mixed", 1.0, 0.0, _DDIM + _LOOP),
    Case("course", "ddim", 7, 1, "blend", 0.0, 0.8, _DDIM),
    Case("course", "ddpm", 500, 7, "mixed", 0.0, 0.0, _DDPM),
    # DPM-Solver++ (2M; eta 1 is its SDE form): every batch size, guidance and eta on and off, both checkpoints
    Case("bundled", "dpmpp", 6, 7, "mixed", 1.5, 1.0, _DPMPP),
    Case("bundled", "dpmpp", 10, 30, "mixed", 0.0, 0.0, _DPMPP),
    Case("course", "dpmpp", 4, 1, "blend", 0.0, 0.5, _DPMPP),
)


def items(cases: tuple[Case, ...] = CASES) -> list[tuple[Case, str, str]]:
    """(case, path, quantity) in case-major order, so each case's runs are computed once."""
    return [(case, path, quantity) for case in cases for path in case.paths for quantity in case.quantities(path)]


# ------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Inputs:
    """What every side of a case is fed: x_T, context rows (and the runtime's form of
    them), step noise (None for deterministic DDIM)."""

    noise: torch.Tensor  # (B, C, H, W)
    rows: torch.Tensor  # (B, K), built here from CLASS_NAMES, independent of the runtime
    runtime_context: Any  # names / blend dicts / None, as a user passes them
    step_noise: torch.Tensor | None  # (T, B, C, H, W)


def _row(item: str | dict[str, float] | None) -> torch.Tensor:
    row = torch.zeros(len(CLASS_NAMES))
    if isinstance(item, str):
        row[CLASS_NAMES.index(item)] = 1.0
    elif isinstance(item, dict):
        for name, weight in item.items():
            row[CLASS_NAMES.index(name)] = weight
    return row


def context_items(kind: str, batch: int) -> list[str | dict[str, float] | None]:
    """One user-facing context item per row: a class name, a blend dict, or None."""
    pools: dict[str, list[Any]] = {"one-hot": list(CLASS_NAMES), "blend": list(BLENDS), "zero": [None],
                                   "mixed": list(CLASS_NAMES) + list(BLENDS) + [None]}
    pool = pools[kind]
    return [pool[k % len(pool)] for k in range(batch)]


def make_inputs(case: Case, timesteps: int, image: tuple[int, int, int]) -> Inputs:
    """Seeded from the case id, so every run of a case sees the same draws."""
    generator = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    shape = (case.batch, *image)
    noise = torch.randn(shape, generator=generator)
    step_noise = torch.randn((timesteps, *shape), generator=generator) if case.noisy else None
    listed = context_items(case.context, case.batch)
    rows = torch.stack([_row(item) for item in listed])
    runtime_context = None if case.context == "zero" else listed
    return Inputs(noise, rows, runtime_context, step_noise)


# ----------------------------------------------------------------- reference run
class Recorder(nn.Module):
    """The eager network, keeping (x, t, c, eps) of every call for the per-call replay."""

    def __init__(self, net: nn.Module, record: bool) -> None:
        super().__init__()
        self.net, self.record = net, record
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        eps = self.net(x, t, c)
        if self.record:
            self.calls.append((x, t, c, eps))
        return eps


def run_reference_sampler(net: nn.Module, case: Case, inputs: Inputs, timesteps: int) -> tuple[np.ndarray, np.ndarray]:
    """`spritegen.export.reference` with network `net`: (final sprites, every intermediate)."""
    common = dict(step_noise=inputs.step_noise, guidance=case.guidance, timesteps=timesteps)
    if case.sampler == "ddpm":
        final, kept = sample_ddpm(net, inputs.noise, inputs.rows, save_rate=1, **common)
    elif case.sampler == "dpmpp":
        final, kept = sample_dpmpp(net, inputs.noise, inputs.rows, indices=dpmpp_indices(timesteps, case.n),
                                   eta=case.eta, **common)
    else:
        final, kept = sample_ddim(net, inputs.noise, inputs.rows, n=case.n, eta=case.eta, **common)
    return final.numpy(), kept.numpy()


# ------------------------------------------------------------------ path drivers
class OrtNet(nn.Module):
    """An ONNX network file (unet.onnx contract) as a torch module, so the reference
    sampler can drive it: t (1,1,1,1) or (B,) is broadcast to the file's t (B,)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        feed = {"x": x.numpy(), "t": np.broadcast_to(t.reshape(-1).numpy(), (batch,)).astype(np.float32),
                "c": c.numpy()}  # the reference always passes c (zeros for the unconditional rows)
        return torch.from_numpy(self.session.run(None, feed)[0])


@dataclass
class Export:
    """One export directory and what drives it: the runtime Sampler, network files, eager model."""

    directory: Path
    model: nn.Module  # the eager ContextUnet the export came from (same pinned shortcut)
    sampler: Sampler = field(init=False)
    _nets: dict[str, nn.Module] = field(default_factory=dict, init=False)
    _sessions: dict[str, ort.InferenceSession] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.sampler = Sampler.load(self.directory, provider="cpu")

    @property
    def timesteps(self) -> int:
        return self.sampler.timesteps

    def net(self, path: str) -> nn.Module:
        """unet.ts or unet_fp16.onnx (for the reference-driven paths), or unet.onnx."""
        if path not in self._nets:
            if path == "torchscript":
                self._nets[path] = torch.jit.load(str(self.directory / TORCHSCRIPT_FILE), map_location="cpu")
            else:
                file = FP16_UNET_FILE if path == "unet_fp16" else GRAPHS["unet"].file
                self._nets[path] = OrtNet(self.directory / file)
        return self._nets[path]

    def step_session(self, path: str) -> ort.InferenceSession:
        if path not in self._sessions:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._sessions[path] = ort.InferenceSession(str(self.directory / GRAPHS[path].file), options,
                                                        providers=["CPUExecutionProvider"])
        return self._sessions[path]


def run_path(export: Export, path: str, case: Case, inputs: Inputs) -> tuple[np.ndarray, np.ndarray | None]:
    """(final sprites, every intermediate or None) of `path` on `case`."""
    if path in NETWORK_PATHS:
        with torch.no_grad():
            return run_reference_sampler(export.net(path), case, inputs, export.timesteps)
    noise = inputs.noise.numpy()
    step_noise = None if inputs.step_noise is None else inputs.step_noise.numpy()
    guidance = case.guidance or None
    impl = RUNTIME_IMPL[path]
    if path == "ddim_loop":
        return export.sampler.ddim(inputs.runtime_context, n=case.n, noise=noise, guidance=guidance, impl=impl), None
    if case.sampler == "ddpm":
        return export.sampler.ddpm(inputs.runtime_context, noise=noise, step_noise=step_noise, save_rate=1,
                                   guidance=guidance, impl=impl)
    if case.sampler == "dpmpp":
        return export.sampler.dpmpp(inputs.runtime_context, n=case.n, eta=case.eta, noise=noise, step_noise=step_noise,
                                    save_rate=1, guidance=guidance, impl=impl)
    return export.sampler.ddim(inputs.runtime_context, n=case.n, eta=case.eta, noise=noise, step_noise=step_noise,
                               save_rate=1, guidance=guidance, impl=impl)


# ------------------------------------------------------------- per-call replays
# Replays per (case, path): a long chain's calls are replayed on an even sample that keeps
# the first and last step (t = T and t -> 0, the schedule's ends). A graph defect moves eps
# at every t, or over a band of t wider than the sample's stride (500 / 64 < 8 steps); a
# defect at one isolated t still moves the chain, and the trajectory and final quantities
# compare the whole chain state by state. Chains up to this many steps are replayed whole.
REPLAY_CALLS = 64


def replayed(count: int) -> list[int]:
    """Indices of the calls (or steps) replayed out of `count`: all of them up to REPLAY_CALLS,
    else REPLAY_CALLS evenly spread ones, both ends included."""
    limit = REPLAY_CALLS
    if count <= limit:
        return list(range(count))
    return sorted({round(k * (count - 1) / (limit - 1)) for k in range(limit)})


def replay_network(net: nn.Module, calls: list) -> float:
    """max |eps_path - eps_eager| over the recorded network calls (`replayed`), each at its own batch."""
    worst = 0.0
    with torch.no_grad():
        for x, t, c, eps in (calls[k] for k in replayed(len(calls))):
            worst = max(worst, max_abs(net(x, t, c).numpy(), eps.numpy()))
    return worst


def replay_steps(export: Export, path: str, case: Case, inputs: Inputs, kept: np.ndarray) -> float:
    """max |step_graph(x_i) - x_prev_ref| over the steps (`replayed`), each fed the reference's own x_i."""
    session, T = export.step_session(path), export.timesteps
    rows = inputs.rows.numpy()
    c = np.concatenate([rows, np.zeros_like(rows)]) if case.guidance else rows  # (GB, K)
    w = np.array([case.guidance], np.float32)
    zeros = np.zeros_like(inputs.noise.numpy())
    pairs = [(i, i - 1) for i in range(T, 0, -1)] if case.sampler == "ddpm" else ddim_pairs(T, case.n)
    worst = 0.0
    for k in replayed(len(pairs)):
        i, i_prev = pairs[k]
        state = inputs.noise.numpy() if k == 0 else kept[k - 1]  # the reference's x_i
        z = zeros if inputs.step_noise is None else inputs.step_noise[i - 1].numpy()
        feed = {"x": state, "c": c, "i": np.array([i], np.int64), "z": z, "w": w}
        if path == "ddim_step":
            feed.update(i_prev=np.array([i_prev], np.int64), eta=np.array([case.eta], np.float32))
        worst = max(worst, max_abs(session.run(None, feed)[0], kept[k]))
    return worst


def replay_solver(export: Export, case: Case, inputs: Inputs, kept: np.ndarray) -> float:
    """max |solver_step(x_i, m) - x_next_ref| over every step, each fed the reference's own x_i; m is
    the graph's x0 output for the reference's previous state (the reference keeps no x0)."""
    session, T = export.step_session("solver_step"), export.timesteps
    rows = inputs.rows.numpy()
    c = np.concatenate([rows, np.zeros_like(rows)]) if case.guidance else rows  # (GB, K)
    w, eta = np.array([case.guidance], np.float32), np.array([case.eta], np.float32)
    state, m, worst = inputs.noise.numpy(), np.zeros_like(inputs.noise.numpy()), 0.0
    for k, (i, i_next, i_last) in enumerate(solver_triples(dpmpp_indices(T, case.n))):
        z = np.zeros_like(state) if inputs.step_noise is None else inputs.step_noise[i - 1].numpy()
        feed = {"x": state, "m": m, "c": c, "i": np.array([i]), "i_next": np.array([i_next]),
                "i_last": np.array([i_last]), "eta": eta, "z": z, "w": w}
        x_next, m = session.run(None, feed)
        worst = max(worst, max_abs(x_next, kept[k]))
        state = kept[k]
    return worst


def max_abs(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| in float64; NaN counts as infinitely wrong, a shape mismatch raises."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} differs from the reference's {want.shape}")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float(np.nan_to_num(diff, nan=np.inf).max())


# ----------------------------------------------------------------------- matrix
@dataclass(frozen=True)
class Measurement:
    """One measured error and what it cost."""

    max_abs: float
    scale: float  # max |reference| of the compared arrays (context for max_abs)
    seconds: float  # wall time of the path's run (or replay) that produced it


@dataclass
class _CaseRuns:
    """Everything computed for one case, kept while its items are measured."""

    inputs: Inputs
    final: np.ndarray
    kept: np.ndarray
    calls: list
    seconds: float
    runs: dict[str, tuple[np.ndarray, np.ndarray | None, float]] = field(default_factory=dict)


class Matrix:
    """Measures (case, path, quantity) items, computing each reference and path run once.

    Only the current case's runs are cached (items come case-major), so memory stays
    at one case's trajectories however long the table grows.
    """

    def __init__(self, open_export: Callable[[str], Export], clock: Callable[[], float] = time.perf_counter) -> None:
        self._open, self.clock = open_export, clock
        self._exports: dict[str, Export] = {}
        self._case: Case | None = None
        self._runs: _CaseRuns | None = None

    def export(self, checkpoint: str) -> Export:
        """The Export of `checkpoint`, opened on first use (so unused checkpoints cost nothing)."""
        if checkpoint not in self._exports:
            self._exports[checkpoint] = self._open(checkpoint)
        return self._exports[checkpoint]

    def reference_seconds(self, case: Case) -> float:
        return self._for(case).seconds

    def measure(self, case: Case, path: str, quantity: str) -> Measurement:
        runs, export = self._for(case), self.export(case.checkpoint)
        if quantity == "eps":
            started = self.clock()
            if path in ("ddpm_step", "ddim_step", "solver_step"):
                replay = replay_solver if path == "solver_step" else partial(replay_steps, path=path)
                error = replay(export, case=case, inputs=runs.inputs, kept=runs.kept)
                scale = float(np.abs(runs.kept).max())
            else:
                error = replay_network(export.net(path), runs.calls)
                scale = max(float(eps.abs().max()) for *_, eps in runs.calls)
            return Measurement(error, scale, self.clock() - started)
        final, kept, seconds = self._path_run(case, path)
        if quantity == "final":
            return Measurement(max_abs(final, runs.final), float(np.abs(runs.final).max()), seconds)
        if kept is None:
            raise AssertionError(f"{path} returned no intermediates")
        return Measurement(max_abs(kept, runs.kept), float(np.abs(runs.kept).max()), seconds)

    def _for(self, case: Case) -> _CaseRuns:
        if self._case != case:
            self._case, self._runs = None, None  # free the previous case first
            export = self.export(case.checkpoint)
            inputs = make_inputs(case, export.timesteps, export.sampler.image_shape)
            wants_calls = any("eps" in case.quantities(p) for p in case.paths)
            recorder = Recorder(export.model, record=wants_calls)
            started = self.clock()
            final, kept = run_reference_sampler(recorder, case, inputs, export.timesteps)
            self._runs = _CaseRuns(inputs, final, kept, recorder.calls, self.clock() - started)
            self._case = case
        return self._runs

    def _path_run(self, case: Case, path: str) -> tuple[np.ndarray, np.ndarray | None, float]:
        runs = self._for(case)
        if path not in runs.runs:
            started = self.clock()
            final, kept = run_path(self.export(case.checkpoint), path, case, runs.inputs)
            runs.runs[path] = (final, kept, self.clock() - started)
        return runs.runs[path]
