"""`Sampler`: DDPM and DDIM over an export directory, with ONNX Runtime and numpy only.

    from spritegen.runtime import Sampler
    sampler = Sampler.load("spritegen-export")
    sprites = sampler.ddim(["hero", "food"], seed=0)  # (2, 3, 16, 16) float32 in [-1, 1]

Conventions are those of `spritegen.export.reference` (the parity oracle): `noise` is
x_T, `step_noise[i-1]` the noise of the step starting at index i (shape (T, B, C, H, W)),
guidance mixes eps = (1 + w) eps(c) - w eps(0), and DDIM steps follow
`contract.ddim_pairs` (the last step clamped to t = 0). Without injected noise every
draw comes from the portable generator (`spritegen.runtime.noise`, docs/noise.md): x_T
is stream 0 of the seed, the step starting at index i stream i. One seed gives
byte-identical sprites on every call, in every thread, whatever the step
implementation, and the same noise in the C++ and browser runtimes. `seed` is one
integer in [0, 2^64) for the whole batch (drawn as one C-order array), or a sequence of
B integers, one per row (row r = the batch-1 call with seed[r]: how a server merges
requests); None draws a fresh 64-bit seed.

Thread safety: sessions are shared (ORT runs concurrently); each call checks a
workspace (runner) for its batch shape out of a pool and returns it afterwards, so
concurrent calls never share buffers and sequential calls never reallocate.
"""

from __future__ import annotations

import math
import secrets
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from spritegen.contract import DDIM_DEFAULT_STEPS, GRAPHS, UNET_FILES
from spritegen.errors import ExportDirError, InputError, shown
from spritegen.runtime import limits
from spritegen.runtime.checks import (check_array, check_finite, check_number, check_positive, check_rate,
                                      check_steps, check_threads)
from spritegen.runtime.context import Context, make_context
from spritegen.runtime.manifest import Manifest, load_manifest
from spritegen.runtime.noise import check_seed
from spritegen.runtime.plan import Noise, Plan, ddim_plan, ddpm_plan
from spritegen.runtime.pool import RunnerPool
from spritegen.runtime.runners import LoopRunner, StepRunner, UnetRunner
from spritegen.runtime.session import Graph, auto_spin, want_cuda
from spritegen.runtime.solver import SolverStepRunner, SolverUnetRunner, dpmpp_run, fast_run, solver_plan
from spritegen.runtime.verify import check_files, check_io, read_graph

IMPLS = ("unet", "step", "loop")
# The graph each step implementation runs DDIM with: the one session `Sampler.load` builds.
IMPL_DDIM_GRAPH = {"unet": "unet", "step": "ddim_step", "loop": "ddim_loop"}
Progress = Callable[[int, int], None]  # (steps done, steps in total)
Result = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]
Seed = Union[None, int, Sequence[int], np.ndarray]  # see the module doc


class Sampler:
    """Sprites from an export directory (module doc). Build with `Sampler.load`."""

    def __init__(self, manifest: Manifest, *, cuda: bool, threads: int | None, impl: str,
                 cuda_graph: bool, spin: bool = True, precision: str = "fp32", max_batch: int = limits.MAX_BATCH,
                 checkpoint: str | None = None) -> None:
        self.manifest = manifest
        self.cuda, self.threads, self.cuda_graph, self.spin = cuda, threads, cuda_graph, spin
        self.max_batch = max_batch
        self.precision = _check_precision(precision)
        self.impl = self._call_impl(impl)
        self._checkpoint = checkpoint  # the checkpoint every graph file must come from (see load)
        self._graphs: dict[str, Graph] = {}
        self._plans: dict[tuple, Plan] = {}  # immutable, so shared by all calls and threads
        self._pool = RunnerPool(self._new_runner)
        self._open_lock = threading.Lock()  # held while a session is built (up to ~0.2 s): not the pool's lock

    @classmethod
    def load(cls, export_dir: str | Path, *, provider: str = "auto", threads: int | None = None,
             impl: str | None = None, cuda_graph: bool = True, spin: bool | None = None,
             open_all: bool = False, precision: str = "fp32", max_batch: int = limits.MAX_BATCH) -> "Sampler":
        """Open an export: read the manifest, verify every graph file's sha256, and build the
        default `impl`'s DDIM graph session now (IO and metadata checked against the
        manifest), so a broken export fails here, before sampling.

        Every other session is built, and checked the same way, on its first use: a one-sprite
        `spritegen sample` then pays for one small session (~10 ms), not for all of them
        (the unrolled loop graph alone takes ~0.17 s on 2 cores). open_all=True builds every
        session now, for a service that wants every check and cost paid at startup.

        provider: "auto" (CUDA when onnxruntime-gpu sees a GPU, else CPU), "cuda", "cpu".
        threads: ORT intra-op threads, 1..limits.max_threads() (default: the cores this process may use).
        impl: default step implementation, "unet", "step" or "loop" (per call: `impl=`);
            None: "step" in fp32, "unet" otherwise.
        precision: the network file "unet" runs: "fp32" (unet.onnx), "fp16" or "int8"
            (unet_fp16.onnx / unet_int8.onnx, written by spritegen-export --fp16 / --int8;
            network + numpy update only, as the step and loop graphs are fp32). int8 is
            ~1.4x faster per call on CPUs with VNNI, and its sprites differ from fp32's.
        cuda_graph: on CUDA, capture and replay a CUDA graph per batch shape.
        spin: ORT's threads spin-wait between ops: fastest on cores this process has to
            itself, slower on cores shared with other busy work. None (default): decided
            at load by session.auto_spin (docs/runtime.md, "Spin-waiting").
        max_batch: the most sprites one call may ask for (default limits.MAX_BATCH), refused
            before anything is allocated.
        """
        threads = check_threads(threads)
        max_batch = check_positive(max_batch, "max_batch")
        if spin is not None and not isinstance(spin, bool):
            raise InputError(f"spin must be True, False or None (automatic), got {shown(spin)}")
        for flag, value in (("cuda_graph", cuda_graph), ("open_all", open_all)):
            if not isinstance(value, bool):
                raise InputError(f"{flag} must be True or False, got {shown(value)}")
        manifest = load_manifest(export_dir)
        impl = impl or ("step" if _check_precision(precision) == "fp32" else "unet")
        first = IMPL_DDIM_GRAPH[_check_impl(impl)]
        now = [first] + ([name for name in GRAPHS if name != first and manifest.has(name)] if open_all else [])
        # Every graph file's hash and metadata now (~25 ms for the demo's six): a tampered,
        # swapped or foreign file is refused at load even when only a later call would open it.
        checkpoint, verified = check_files(manifest, keep={_graph_file(name, precision) for name in now})
        cuda = want_cuda(provider)
        spin = auto_spin(threads) if spin is None else spin
        options = dict(threads=threads, impl=impl, cuda_graph=cuda_graph, spin=spin, precision=precision,
                       max_batch=max_batch, checkpoint=checkpoint)
        sampler = cls(manifest, cuda=cuda, **options)
        try:
            sampler._open_graphs(now, dict(verified))
        except (InputError, ExportDirError) as exc:
            if not (cuda and provider == "auto"):
                raise
            # "auto" with onnxruntime-gpu but no usable GPU: CPU (a broken file fails there too).
            warnings.warn(f"provider='auto': CUDA failed, sampling on the CPU ({exc})", RuntimeWarning, stacklevel=2)
            sampler = cls(manifest, cuda=False, **options)
            sampler._open_graphs(now, verified)
        return sampler

    def __repr__(self) -> str:
        return (f"Sampler({str(self.manifest.directory)!r}, provider={self.provider!r}, impl={self.impl!r}, "
                f"precision={self.precision!r}, threads={self.threads!r})")

    # ------------------------------------------------------------------ facts
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.manifest.class_names

    @property
    def timesteps(self) -> int:
        return self.manifest.schedule.config.timesteps

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sprite."""
        m = self.manifest.model
        return (m.in_channels, m.height, m.height)

    @property
    def provider(self) -> str:
        return "cuda" if self.cuda else "cpu"

    @property
    def open_graphs(self) -> tuple[str, ...]:
        """Graphs whose sessions are built so far (see `load`)."""
        return tuple(self._graphs)

    def noise(self, batch: int, seed: Seed) -> np.ndarray:
        """The x_T that a call with this batch and `seed` draws (see plan.Noise), to share
        one starting noise between samplers: ddpm(c, noise=noise(B, s), seed=s) == ddpm(c, seed=s)."""
        batch = self._check_batch(batch)
        return Noise(None, None, _seeds(seed, batch), (batch, *self.image_shape)).x_T

    def context(self, context: Context, batch: int | None = None) -> np.ndarray:
        """The (B, K) float32 context rows for `context` (see spritegen.runtime.context)."""
        if batch is not None:
            batch = self._check_batch(batch)
        return make_context(context, self.class_names, batch, max_batch=self.max_batch)

    # --------------------------------------------------------------- samplers
    def ddpm(self, context: Context, *, noise: np.ndarray | None = None, step_noise: np.ndarray | None = None,
             seed: Seed = None, save_rate: int | None = None, guidance: float | None = None,
             impl: str | None = None, progress: Progress | None = None) -> Result:
        """The course's DDPM sampler, T steps. Returns sprites (B, C, H, W) in [-1, 1], or
        (sprites, intermediates) when `save_rate` is given: the unclipped states after the
        steps i with i % save_rate == 0, i == T or i < 8 (contract.ddpm_keeps), (K, B, C, H, W)."""
        self._refuse_student()
        impl = self._call_impl(impl)
        if impl == "loop":
            raise InputError("impl='loop' exists for deterministic DDIM only (ddim_loop.onnx); "
                             "use impl='step' or 'unet' for DDPM")
        rate = check_rate(save_rate)
        plan = self._plan(("ddpm", rate), lambda: ddpm_plan(self.manifest.schedule, rate))
        return self._sample(plan, "ddpm_step", impl, context, noise, step_noise, seed, guidance, 0.0,
                            rate is not None, progress)

    def ddim(self, context: Context, *, n: int | None = None, eta: float = 0.0, noise: np.ndarray | None = None,
             step_noise: np.ndarray | None = None, seed: Seed = None, save_rate: int | None = None,
             guidance: float | None = None, impl: str | None = None,
             progress: Progress | None = None) -> Result:
        """DDIM with step T // n (contract.ddim_pairs); eta > 0 is stochastic DDIM (eq. 12).
        n: None means contract.DDIM_DEFAULT_STEPS, or with impl="loop" the loop graph's own
        ddim_loop_steps. Returns sprites (B, C, H, W) in [-1, 1], or (sprites, intermediates)
        when `save_rate` is given: the unclipped state after every save_rate-th step and the last."""
        impl = self._call_impl(impl)
        n = self.check_ddim(n=n, eta=eta, save_rate=save_rate, impl=impl)
        eta, rate = float(eta), check_rate(save_rate)
        if impl == "loop":
            return self._loop(context, noise, seed, guidance, progress)
        plan = self._plan(("ddim", n, eta, rate), lambda: ddim_plan(self.manifest.schedule, n, eta, rate))
        return self._sample(plan, "ddim_step", impl, context, noise, step_noise, seed, guidance, eta,
                            rate is not None, progress)

    def check_ddim(self, *, n: int | None = None, eta: float = 0.0, save_rate: int | None = None,
                   impl: str | None = None) -> int:
        """The steps `ddim` with these arguments runs (n=None resolved as `ddim` says); InputError
        for what `ddim` would refuse, so a caller can check before other long work."""
        self._refuse_student()
        impl = self._call_impl(impl)
        if impl == "loop" and not self.manifest.has("ddim_loop"):
            raise ExportDirError(f"export {self.manifest.directory} has no ddim_loop.onnx; use impl='step'")
        if n is None:
            n = self.manifest.ddim_loop_steps if impl == "loop" else min(DDIM_DEFAULT_STEPS, self.timesteps)
        n = check_steps(n, self.timesteps)
        eta = check_number(eta, "eta", upper=1.0)
        rate = check_rate(save_rate)
        steps = self.manifest.ddim_loop_steps
        if impl == "loop" and (n != steps or eta != 0 or rate is not None):
            raise InputError(f"impl='loop' runs ddim_loop.onnx: deterministic DDIM with n={steps} only and no "
                             f"intermediates (asked n={n}, eta={eta:g}, save_rate={rate}); use impl='step'")
        return n

    def dpmpp(self, context: Context, *, n: int | None = None, eta: float = 0.0,
              indices: Sequence[int] | None = None, noise: np.ndarray | None = None,
              step_noise: np.ndarray | None = None, seed: Seed = None, save_rate: int | None = None,
              guidance: float | None = None, impl: str | None = None, progress: Progress | None = None) -> Result:
        """DPM-Solver++(2M) (eta = 0, deterministic) or SDE-DPM-Solver++(2M) (eta = 1; between mixes
        the two): n network calls over contract.dpmpp_indices(T, n) (n default
        contract.DPMPP_DEFAULT_STEPS), or over explicit step `indices` (T down to 0). Returns as
        `ddim` does: sprites, or (sprites, intermediates) with `save_rate` (every save_rate-th
        step's state and the last). runtime/solver.py has the math."""
        indices = self.check_dpmpp(n=n, eta=eta, indices=indices, save_rate=save_rate, impl=impl)
        return self._solve(context, indices, float(eta), noise, step_noise, seed, save_rate, guidance, impl, progress)

    def fast(self, context: Context, *, n: int | None = None, noise: np.ndarray | None = None,
             step_noise: np.ndarray | None = None, seed: Seed = None, save_rate: int | None = None,
             guidance: float | None = None, impl: str | None = None, progress: Progress | None = None) -> Result:
        """The export's few-step sampler fitted to its checkpoint (the manifest's "fast" section, written
        by spritegen-export): its solver and eta on the step indices fitted for n network calls
        (default: the export's recommended n). Returns as `dpmpp`."""
        indices, eta = self.check_fast(n=n, save_rate=save_rate, impl=impl)
        return self._solve(context, indices, eta, noise, step_noise, seed, save_rate, guidance, impl, progress,
                           first_order=self.manifest.fast.first_order)

    def check_dpmpp(self, *, n: int | None = None, eta: float = 0.0, indices: Sequence[int] | None = None,
                    save_rate: int | None = None, impl: str | None = None) -> tuple[int, ...]:
        """The step indices `dpmpp` with these arguments runs; InputError for what it would refuse."""
        self._refuse_student()
        self._solver_impl(impl)
        check_number(eta, "eta", upper=1.0)
        check_rate(save_rate)
        return dpmpp_run(self.timesteps, n, indices)

    def check_fast(self, *, n: int | None = None, save_rate: int | None = None,
                   impl: str | None = None) -> tuple[tuple[int, ...], float]:
        """(step indices, eta) that `fast` with these arguments runs; ExportDirError when the export has
        no fitted sampler, InputError for a call count it was not fitted for."""
        self._solver_impl(impl)
        check_rate(save_rate)
        return fast_run(self.manifest, n)

    # ---------------------------------------------------------------- driving
    def _solve(self, context: Context, indices: tuple[int, ...], eta: float, noise: np.ndarray | None,
               step_noise: np.ndarray | None, seed: Seed, save_rate: int | None, guidance: float | None,
               impl: str | None, progress: Progress | None, first_order: bool = False) -> Result:
        """A solver run over checked `indices` (dpmpp and fast; `first_order`: DDIM, runtime/solver.py)."""
        impl, rate = self._solver_impl(impl), check_rate(save_rate)
        plan = self._plan(("solver", indices, eta, rate, first_order),
                          lambda: solver_plan(self.manifest.schedule, indices, eta, rate, first_order))
        return self._sample(plan, "solver_step", impl, context, noise, step_noise, seed, guidance, eta,
                            rate is not None, progress)

    def _sample(self, plan: Plan, step_graph: str, impl: str, context: Context, noise: np.ndarray | None,
                step_noise: np.ndarray | None, seed: Seed, guidance: float | None, eta: float,
                keep: bool, progress: Progress | None) -> Result:
        streams = [step.i for step in plan.steps if step.noisy]
        rows, source, weight = self._inputs(context, noise, step_noise, seed, guidance, streams)
        batch, guided, total = rows.shape[0], weight != 0, len(plan.steps)
        kept = self._kept_buffer(plan.kept, batch) if keep else None
        key = (impl, step_graph, batch, guided)
        with self._pool.checkout(key) as runner:
            if impl == "unet":
                runner.start(source.x_T, rows, weight)
            else:
                runner.start(source.x_T, rows, weight, eta)
            slot = 0
            for done, step in enumerate(plan.steps, start=1):
                runner.step(step, source)
                if step.keep:
                    kept[slot] = runner.state()
                    slot += 1
                if progress is not None:
                    progress(done, total)
            final = runner.state()
            check_finite(final, rows, weight)
            sprites = np.clip(final, -1, 1)  # a new array: the runner's buffers stay private
        if keep:
            check_finite(kept, rows, weight)
        return (sprites, kept) if keep else sprites

    def _loop(self, context: Context, noise: np.ndarray | None, seed: Seed, guidance: float | None,
              progress: Progress | None) -> np.ndarray:
        """ddim_loop.onnx's whole DDIM in one call (its n, eta = 0 and no intermediates: check_ddim)."""
        rows, source, weight = self._inputs(context, noise, None, seed, guidance, ())
        with self._pool.checkout(("loop", "ddim_loop", rows.shape[0], weight != 0)) as runner:
            sprites = runner.run(source.x_T, rows, weight).copy()
        check_finite(sprites, rows, weight)
        if progress is not None:
            progress(1, 1)
        return sprites

    def _inputs(self, context: Context, noise: np.ndarray | None, step_noise: np.ndarray | None, seed: Seed,
                guidance: float | None, streams: Sequence[int]) -> tuple[np.ndarray, Noise, float]:
        """Validated (context rows, noise source, guidance weight) for one call; `streams`:
        the step indices whose noise the call draws, in order."""
        batch = None
        if noise is not None:
            check_array(noise, "noise", (None, *self.image_shape))
            batch = self._check_batch(noise.shape[0])
        elif context is None and _is_sequence(seed):
            batch = self._check_batch(len(seed))  # unconditional, one sprite per seed
        rows = make_context(context, self.class_names, batch, max_batch=self.max_batch)
        shape = (rows.shape[0], *self.image_shape)
        if step_noise is not None:
            check_array(step_noise, "step_noise", (self.timesteps, *shape))
        seeds = _seeds(seed, rows.shape[0])
        weight = 0.0 if guidance is None else check_number(guidance, "guidance", upper=limits.MAX_GUIDANCE)
        return rows, Noise(noise, step_noise, seeds, shape, streams), weight

    # ------------------------------------------------------------ resources
    def _check_batch(self, batch: Any) -> int:
        """`batch` as an int in 1..max_batch, checked before anything of that size is allocated."""
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise InputError(f"batch must be a positive integer, got {shown(batch)}")
        if batch > self.max_batch:
            raise InputError(f"batch {batch} is more than this sampler's max_batch={self.max_batch}; sample in "
                             "smaller batches, or raise it with Sampler.load(max_batch=...) (CLI: --max-batch)")
        return int(batch)

    def _kept_buffer(self, states: int, batch: int) -> np.ndarray:
        """The (K, B, C, H, W) intermediates array, refused beyond limits.MAX_KEPT_BYTES."""
        size = states * batch * math.prod(self.image_shape) * 4
        if size > limits.MAX_KEPT_BYTES:
            raise InputError(f"keeping {states} intermediate states of {batch} sprites takes {size / 2**20:.0f} MiB, "
                             f"more than the {limits.MAX_KEPT_BYTES // 2**20} MiB allowed; use a larger save_rate "
                             "or a smaller batch")
        return np.empty((states, batch, *self.image_shape), np.float32)

    def _plan(self, key: tuple, build: Callable[[], Plan]) -> Plan:
        """The plan for `key`, built once (a DDPM plan costs milliseconds of scalar math)."""
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 64:  # many distinct (n, eta, save_rate): keep memory bounded
                self._plans.clear()
            plan = self._plans.setdefault(key, build())
        return plan

    def _refuse_student(self) -> None:
        """UsageError (an InputError) when the export's network is a distilled student: it gives sprites
        only with `fast` on its own step indices (FastSampler.student_only says so)."""
        fast = self.manifest.fast
        if fast is not None and fast.student:
            raise fast.student_only()

    def _solver_impl(self, impl: str | None) -> str:
        """The step implementation a solver call runs: "step" (solver_step.onnx) or "unet"."""
        impl = self._call_impl(impl)
        if impl == "loop":
            raise InputError("impl='loop' exists for deterministic DDIM only (ddim_loop.onnx); use impl='step' or "
                             "'unet' for the dpmpp and fast samplers")
        return impl

    def _call_impl(self, impl: str | None) -> str:
        """The step implementation a call runs: `impl`, else the sampler's default."""
        impl = _check_impl(impl or self.impl)
        if self.precision != "fp32" and impl != "unet":
            raise InputError(f"precision {self.precision!r} runs {UNET_FILES[self.precision]} with impl='unet' only "
                             f"(the step and loop graphs are fp32); got impl={shown(impl)}")
        return impl

    def _open_graphs(self, names: list[str], verified: dict[str, bytes]) -> None:
        """Build the sessions of `names` now, from `verified` bytes where load already read them."""
        for name in names:
            self._graph(name, verified.pop(_graph_file(name, self.precision), None))

    def _graph(self, name: str, model: bytes | None = None) -> Graph:
        """The session of graph `name` (shared by all threads), built on first use from
        re-verified bytes (or `model`, bytes verified just before); ExportDirError when the
        export lacks it or it is unusable."""
        graph = self._graphs.get(name)
        if graph is not None:
            return graph
        with self._open_lock:
            graph = self._graphs.get(name)
            if graph is None:
                file = _graph_file(name, self.precision)
                if model is None:
                    model = read_graph(self.manifest, file, self._checkpoint)
                graph = Graph(name, model, cuda=self.cuda, threads=self.threads, cuda_graph=self.cuda_graph,
                              spin=self.spin, file=file)
                check_io(graph, name, self.manifest.directory / file)
                self.manifest.check_dims(file, graph.session.get_inputs()[0].shape)
                self._graphs[name] = graph
        return graph

    def _new_runner(self, impl: str, step_graph: str, batch: int, guided: bool) -> Any:
        shape, classes = self.image_shape, self.manifest.model.n_cfeat
        if step_graph == "solver_step":
            if impl == "unet":
                return SolverUnetRunner(self._graph("unet"), batch, shape, classes, guided)
            return SolverStepRunner(self._graph("solver_step"), batch, shape, classes, guided)
        if impl == "unet":
            return UnetRunner(self._graph("unet"), batch, shape, classes, guided)
        if impl == "step":
            return StepRunner(self._graph(step_graph), step_graph == "ddim_step", batch, shape, classes, guided)
        return LoopRunner(self._graph("ddim_loop"), batch, shape, classes, guided)


def _is_sequence(seed: Any) -> bool:
    return isinstance(seed, (list, tuple)) or (isinstance(seed, np.ndarray) and seed.ndim == 1)


def _seeds(seed: Seed, batch: int) -> int | tuple[int, ...]:
    """One checked seed for the whole batch, or a tuple of `batch` (one per row); None draws
    a fresh 64-bit seed. InputError for anything else."""
    if seed is None:
        return secrets.randbits(64)
    try:
        if not _is_sequence(seed):
            return check_seed(seed)
        seeds = tuple(check_seed(s) for s in seed)
    except ValueError as exc:
        raise InputError(f"{exc}; pass one integer seed, or one per sprite") from None
    if len(seeds) != batch:
        raise InputError(f"{len(seeds)} seeds for a batch of {batch} sprites; pass one integer seed, or "
                         f"exactly one per sprite")
    return seeds


def _graph_file(name: str, precision: str) -> str:
    """The file graph `name` is read from: "unet" in `precision`, the others as the contract names them."""
    return UNET_FILES[precision] if name == "unet" else GRAPHS[name].file


def _check_precision(precision: str) -> str:
    if precision not in UNET_FILES:
        raise InputError(f"unknown precision {shown(precision)}; choose one of {', '.join(UNET_FILES)}")
    return precision


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise InputError(f"unknown step implementation {shown(impl)}; choose one of {', '.join(IMPLS)}")
    return impl
