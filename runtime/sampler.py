"""`Sampler`: DDPM and DDIM over an export directory, with ONNX Runtime and numpy only.

    from spritegen.runtime import Sampler
    sampler = Sampler.load("spritegen-export")
    sprites = sampler.ddim(["hero", "food"], n=25, seed=0)  # (2, 3, 16, 16) float32 in [-1, 1]

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union

import numpy as np

from spritegen.contract import GRAPHS, UNET_FILES
from spritegen.errors import ExportDirError, InputError
from spritegen.runtime.context import Context, make_context
from spritegen.runtime.manifest import Manifest, load_manifest
from spritegen.runtime.noise import check_seed
from spritegen.runtime.plan import Noise, Plan, ddim_plan, ddpm_plan
from spritegen.runtime.runners import LoopRunner, StepRunner, UnetRunner
from spritegen.runtime.session import Graph, want_cuda

IMPLS = ("unet", "step", "loop")
# The graph each step implementation runs DDIM with: the one session `Sampler.load` builds.
IMPL_DDIM_GRAPH = {"unet": "unet", "step": "ddim_step", "loop": "ddim_loop"}
Progress = Callable[[int, int], None]  # (steps done, steps in total)
Result = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]
Seed = Union[None, int, Sequence[int], np.ndarray]  # see the module doc


class Sampler:
    """Sprites from an export directory (module doc). Build with `Sampler.load`."""

    def __init__(self, manifest: Manifest, *, cuda: bool, threads: int | None, impl: str,
                 cuda_graph: bool, spin: bool = True, precision: str = "fp32") -> None:
        self.manifest = manifest
        self.cuda, self.threads, self.cuda_graph, self.spin = cuda, threads, cuda_graph, spin
        self.precision = _check_precision(precision)
        self.impl = self._call_impl(impl)
        self._graphs: dict[str, Graph] = {}
        self._plans: dict[tuple, Plan] = {}  # immutable, so shared by all calls and threads
        self._pool: dict[tuple, list[Any]] = {}
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # held while a session is built (up to ~0.2 s): not the pool's lock

    @classmethod
    def load(cls, export_dir: str | Path, *, provider: str = "auto", threads: int | None = None,
             impl: str | None = None, cuda_graph: bool = True, spin: bool = True,
             open_all: bool = False, precision: str = "fp32") -> "Sampler":
        """Open an export: read the manifest, verify every graph file's sha256, and build the
        default `impl`'s DDIM graph session now (IO and metadata checked against the
        manifest), so a broken export fails here, before sampling.

        Every other session is built, and checked the same way, on its first use: a one-sprite
        `spritegen sample` then pays for one small session (~10 ms), not for all of them
        (the unrolled loop graph alone takes ~0.17 s on 2 cores). open_all=True builds every
        session now, for a service that wants every check and cost paid at startup.

        provider: "auto" (CUDA when onnxruntime-gpu sees a GPU, else CPU), "cuda", "cpu".
        threads: ORT intra-op threads (default: the cores this process may use).
        impl: default step implementation, "unet", "step" or "loop" (per call: `impl=`);
            None: "step" in fp32, "unet" otherwise.
        precision: the network file "unet" runs: "fp32" (unet.onnx), "fp16" or "int8"
            (unet_fp16.onnx / unet_int8.onnx, written by spritegen-export --fp16 / --int8;
            network + numpy update only, as the step and loop graphs are fp32). int8 is
            ~1.4x faster per call on CPUs with VNNI, and its sprites differ from fp32's.
        cuda_graph: on CUDA, capture and replay a CUDA graph per batch shape.
        spin: ORT's threads spin-wait between ops (ORT's default; fastest on cores this
            process has to itself). spin=False for cores shared with other busy work.
        """
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer, got {threads!r}")
        manifest = load_manifest(export_dir)
        impl = impl or ("step" if _check_precision(precision) == "fp32" else "unet")
        first = IMPL_DDIM_GRAPH[_check_impl(impl)]
        now = [first] + ([name for name in GRAPHS if name != first and manifest.has(name)] if open_all else [])
        # Every other graph file's hash now (~25 ms for the demo's four; the ones opened below
        # are verified as they open): a tampered or swapped file is refused at load even when
        # only a later call would open it.
        opening = {_graph_file(name, precision) for name in now}
        for name in sorted({spec.file for spec in GRAPHS.values()} | set(UNET_FILES.values())):
            if name in manifest.sha256 and name not in opening:
                manifest.read_file(name)
        cuda = want_cuda(provider)
        options = dict(threads=threads, impl=impl, cuda_graph=cuda_graph, spin=spin, precision=precision)
        sampler = cls(manifest, cuda=cuda, **options)
        try:
            sampler._open_graphs(now)
        except (InputError, ExportDirError) as exc:
            if not (cuda and provider == "auto"):
                raise
            # "auto" with onnxruntime-gpu but no usable GPU: CPU (a broken file fails there too).
            warnings.warn(f"provider='auto': CUDA failed, sampling on the CPU ({exc})", RuntimeWarning, stacklevel=2)
            sampler = cls(manifest, cuda=False, **options)
            sampler._open_graphs(now)
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
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise InputError(f"batch must be a positive integer, got {batch!r}")
        return Noise(None, None, _seeds(seed, int(batch)), (int(batch), *self.image_shape)).x_T

    def context(self, context: Context, batch: int | None = None) -> np.ndarray:
        """The (B, K) float32 context rows for `context` (see spritegen.runtime.context)."""
        return make_context(context, self.class_names, batch)

    # --------------------------------------------------------------- samplers
    def ddpm(self, context: Context, *, noise: np.ndarray | None = None, step_noise: np.ndarray | None = None,
             seed: Seed = None, save_rate: int | None = None, guidance: float | None = None,
             impl: str | None = None, progress: Progress | None = None) -> Result:
        """The course's DDPM sampler, T steps. Returns sprites (B, C, H, W) in [-1, 1], or
        (sprites, intermediates) when `save_rate` is given: the unclipped states after the
        steps i with i % save_rate == 0, i == T or i < 8 (contract.ddpm_keeps), (K, B, C, H, W)."""
        impl = self._call_impl(impl)
        if impl == "loop":
            raise InputError("impl='loop' exists for deterministic DDIM only (ddim_loop.onnx); "
                             "use impl='step' or 'unet' for DDPM")
        rate = _check_rate(save_rate)
        plan = self._plan(("ddpm", rate), lambda: ddpm_plan(self.manifest.schedule, rate))
        return self._sample(plan, "ddpm_step", impl, context, noise, step_noise, seed, guidance, 0.0,
                            rate is not None, progress)

    def ddim(self, context: Context, *, n: int = 25, eta: float = 0.0, noise: np.ndarray | None = None,
             step_noise: np.ndarray | None = None, seed: Seed = None, save_rate: int | None = None,
             guidance: float | None = None, impl: str | None = None,
             progress: Progress | None = None) -> Result:
        """DDIM with step T // n (contract.ddim_pairs); eta > 0 is stochastic DDIM (eq. 12).
        Returns sprites (B, C, H, W) in [-1, 1], or (sprites, intermediates) when `save_rate`
        is given: the unclipped state after every save_rate-th step and the last."""
        impl = self._call_impl(impl)
        n = _check_steps(n, self.timesteps)
        eta = _check_number(eta, "eta", upper=1.0)
        rate = _check_rate(save_rate)
        if impl == "loop":
            return self._loop(n, eta, rate, context, noise, seed, guidance, progress)
        plan = self._plan(("ddim", n, eta, rate), lambda: ddim_plan(self.manifest.schedule, n, eta, rate))
        return self._sample(plan, "ddim_step", impl, context, noise, step_noise, seed, guidance, eta,
                            rate is not None, progress)

    # ---------------------------------------------------------------- driving
    def _sample(self, plan: Plan, step_graph: str, impl: str, context: Context, noise: np.ndarray | None,
                step_noise: np.ndarray | None, seed: Seed, guidance: float | None, eta: float,
                keep: bool, progress: Progress | None) -> Result:
        streams = [step.i for step in plan.steps if step.noisy]
        rows, source, weight = self._inputs(context, noise, step_noise, seed, guidance, streams)
        batch, guided, total = rows.shape[0], weight != 0, len(plan.steps)
        kept = np.empty((plan.kept, batch, *self.image_shape), np.float32) if keep else None
        key = (impl, step_graph, batch, guided)
        with self._runner(key) as runner:
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
            sprites = np.clip(runner.state(), -1, 1)  # a new array: the runner's buffers stay private
        return (sprites, kept) if keep else sprites

    def _loop(self, n: int, eta: float, rate: int | None, context: Context, noise: np.ndarray | None,
              seed: Seed, guidance: float | None, progress: Progress | None) -> np.ndarray:
        steps = self.manifest.ddim_loop_steps
        if not self.manifest.has("ddim_loop"):
            raise ExportDirError(f"export {self.manifest.directory} has no ddim_loop.onnx; use impl='step'")
        if n != steps or eta != 0 or rate is not None:
            raise InputError(f"impl='loop' runs ddim_loop.onnx: deterministic DDIM with n={steps} only and no "
                             f"intermediates (asked n={n}, eta={eta:g}, save_rate={rate}); use impl='step'")
        rows, source, weight = self._inputs(context, noise, None, seed, guidance, ())
        with self._runner(("loop", "ddim_loop", rows.shape[0], weight != 0)) as runner:
            sprites = runner.run(source.x_T, rows, weight).copy()
        if progress is not None:
            progress(1, 1)
        return sprites

    def _inputs(self, context: Context, noise: np.ndarray | None, step_noise: np.ndarray | None, seed: Seed,
                guidance: float | None, streams: Sequence[int]) -> tuple[np.ndarray, Noise, float]:
        """Validated (context rows, noise source, guidance weight) for one call; `streams`:
        the step indices whose noise the call draws, in order."""
        batch = None
        if noise is not None:
            _check_array(noise, "noise", (None, *self.image_shape))
            batch = noise.shape[0]
        elif context is None and _is_sequence(seed):
            batch = len(seed)  # unconditional, one sprite per seed
        rows = make_context(context, self.class_names, batch)
        shape = (rows.shape[0], *self.image_shape)
        if step_noise is not None:
            _check_array(step_noise, "step_noise", (self.timesteps, *shape))
        seeds = _seeds(seed, rows.shape[0])
        weight = 0.0 if guidance is None else _check_number(guidance, "guidance")
        return rows, Noise(noise, step_noise, seeds, shape, streams), weight

    # ------------------------------------------------------------ resources
    def _plan(self, key: tuple, build: Callable[[], Plan]) -> Plan:
        """The plan for `key`, built once (a DDPM plan costs milliseconds of scalar math)."""
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 64:  # many distinct (n, eta, save_rate): keep memory bounded
                self._plans.clear()
            plan = self._plans.setdefault(key, build())
        return plan

    def _call_impl(self, impl: str | None) -> str:
        """The step implementation a call runs: `impl`, else the sampler's default."""
        impl = _check_impl(impl or self.impl)
        if self.precision != "fp32" and impl != "unet":
            raise InputError(f"precision {self.precision!r} runs {UNET_FILES[self.precision]} with impl='unet' only "
                             f"(the step and loop graphs are fp32); got impl={impl!r}")
        return impl

    def _open_graphs(self, names: list[str]) -> None:
        for name in names:
            self._graph(name)

    def _graph(self, name: str) -> Graph:
        """The session of graph `name` (shared by all threads), built on first use from
        re-verified bytes; ExportDirError when the export lacks it or it is unusable."""
        graph = self._graphs.get(name)
        if graph is not None:
            return graph
        with self._open_lock:
            graph = self._graphs.get(name)
            if graph is None:
                file = _graph_file(name, self.precision)
                flag = "" if self.precision == "fp32" else f" --{self.precision}"
                model = self.manifest.read_file(file, hint=f"re-export with spritegen-export{flag}")
                graph = Graph(name, model, cuda=self.cuda, threads=self.threads, cuda_graph=self.cuda_graph,
                              spin=self.spin)
                _check_io(graph, name, self.manifest.directory / file)
                self.manifest.check_graph(name, graph.session.get_modelmeta().custom_metadata_map,
                                          graph.session.get_inputs()[0].shape, file)
                self._graphs[name] = graph
        return graph

    @contextmanager
    def _runner(self, key: tuple) -> Iterator[Any]:
        """A workspace for `key` (impl, graph, batch, guided) owned by this call alone."""
        with self._lock:
            free = self._pool.setdefault(key, [])
            runner = free.pop() if free else None
        if runner is None:
            runner = self._new_runner(*key)
        try:
            yield runner
        finally:
            with self._lock:
                self._pool[key].append(runner)

    def _new_runner(self, impl: str, step_graph: str, batch: int, guided: bool) -> Any:
        shape, classes = self.image_shape, self.manifest.model.n_cfeat
        if impl == "unet":
            return UnetRunner(self._graph("unet"), batch, shape, classes, guided)
        if impl == "step":
            return StepRunner(self._graph(step_graph), step_graph == "ddim_step", batch, shape, classes, guided)
        return LoopRunner(self._graph("ddim_loop"), batch, shape, classes, guided)


def _check_io(graph: Graph, name: str, path: Path) -> None:
    """The session's input/output names must be the contract's (a foreign ONNX file is refused)."""
    spec = GRAPHS[name]
    found = ([i.name for i in graph.session.get_inputs()], [o.name for o in graph.session.get_outputs()])
    wanted = ([s.name for s in spec.inputs], [s.name for s in spec.outputs])
    if sorted(found[0]) != sorted(wanted[0]) or sorted(found[1]) != sorted(wanted[1]):
        raise ExportDirError(f"{path} has inputs {found[0]} -> {found[1]}, but the contract says "
                             f"{wanted[0]} -> {wanted[1]}; re-export with spritegen-export")


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
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(UNET_FILES)}")
    return precision


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise InputError(f"unknown step implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    return impl


def _check_steps(n: Any, timesteps: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= timesteps:
        raise InputError(f"DDIM steps n must be an integer in 1..{timesteps}, got {n!r}")
    return int(n)


def _check_rate(save_rate: Any) -> int | None:
    if save_rate is None:
        return None
    if isinstance(save_rate, bool) or not isinstance(save_rate, (int, np.integer)) or save_rate < 1:
        raise InputError(f"save_rate must be a positive integer, got {save_rate!r}")
    return int(save_rate)


def _check_number(value: Any, name: str, upper: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (upper is not None and number > upper):
        bounds = f"in 0..{upper:g}" if upper is not None else ">= 0"
        raise InputError(f"{name} must be a finite number {bounds}, got {value!r}")
    return number


def _check_array(array: Any, name: str, shape: tuple[int | None, ...]) -> None:
    """float32 ndarray of `shape` (None = any size >= 1), all finite."""
    want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
    if not isinstance(array, np.ndarray):
        raise InputError(f"{name} must be a numpy float32 array of shape {want}, got {type(array).__name__}")
    if array.dtype != np.float32:
        raise InputError(f"{name} must be float32, got {array.dtype}; pass {name}.astype(np.float32)")
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        raise InputError(f"{name} must have shape {want}, got {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"batch 0: {name} holds no sprites")
    if not np.isfinite(array).all():
        raise InputError(f"{name} holds NaN or Inf; pass finite standard normal draws")
