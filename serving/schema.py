"""The served models' request and response tensors: names, dtypes and per-sprite shapes.

One home for what the PyTriton binding declares, the request parser reads and
`spritegen.client` sends. Shapes and dtypes are derived from the export (its model
config and schedule) and from the IO contract's graph specs, never retyped: the context
is what the network's `c` input takes, noise what the step graphs' `x`/`z` take.

Every tensor carries a leading batch dimension of sprites (Triton's max_batch_size > 0):
one request may hold several sprites, each row its own context, seed and noise. Sampler
parameters (n, eta, guidance) are per row too; rows are only ever merged with rows that
share them (serving.batching). numpy only: the client imports this without pytriton.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from spritegen.contract import DDIM_DEFAULT_STEPS, DPMPP_DEFAULT_STEPS, GRAPHS, SAMPLERS as SAMPLER_SPECS
from spritegen.contract import TIMESTEPS_LIMITS, UNCONDITIONAL, ModelConfig, check_solver_indices

# The served samplers: name -> the per-row arguments its runtime Sampler method takes besides
# context, seeds, noise and guidance, read from the contract's one sampler table. One row per
# sampler: its Triton model, its inputs, its batching key (serving.requests.Params) and what
# the models publish all follow from it.
SAMPLER_ARGS: dict[str, tuple[str, ...]] = {
    spec.name: tuple(arg for arg, takes in (("n", spec.takes_n), ("eta", spec.takes_eta)) if takes)
    for spec in SAMPLER_SPECS.values()
}
SAMPLERS = tuple(SAMPLER_ARGS)
FITTED = "fast"  # served only when the export has a fitted few-step sampler (its manifest's "fast")
STEP_DEFAULTS = {"ddim": DDIM_DEFAULT_STEPS, "dpmpp": DPMPP_DEFAULT_STEPS}  # n when a request omits it


def model_name(sampler: str) -> str:
    """The Triton model serving `sampler`."""
    return f"spritegen_{sampler}"


MODELS = {name: model_name(name) for name in SAMPLERS}
SEED_DTYPE = np.dtype(np.uint64)  # seeds are 64-bit (the runtime's noise generator keys)
DEFAULTS = {"eta": 0.0, "guidance": 0.0}  # when a request omits them; n: per sampler (defaults())


def _graph_dtype(graph: str, tensor: str) -> np.dtype:
    specs = {s.name: s for s in (*GRAPHS[graph].inputs, *GRAPHS[graph].outputs)}
    return np.dtype(specs[tensor].dtype)


@dataclass(frozen=True)
class Field:
    """One request input or response output, per sprite (the batch dimension is implied)."""

    name: str
    dtype: np.dtype  # np.dtype(object) for Triton BYTES
    shape: tuple[int, ...]
    doc: str
    samplers: tuple[str, ...] = SAMPLERS  # the models that declare it

    @property
    def is_bytes(self) -> bool:
        return self.dtype == np.dtype(object)


@dataclass(frozen=True)
class Schema:
    """Inputs and outputs of the served models for one export's model and schedule."""

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    classes: int  # K: context width
    image: tuple[int, int, int]  # (C, H, W)
    timesteps: int  # T

    def inputs_of(self, sampler: str) -> tuple[Field, ...]:
        return tuple(f for f in self.inputs if sampler in f.samplers)

    def input(self, name: str) -> Field:
        return next(f for f in self.inputs if f.name == name)


def _taking(argument: str) -> tuple[str, ...]:
    return tuple(name for name, args in SAMPLER_ARGS.items() if argument in args)


def schema(model: ModelConfig, timesteps: int) -> Schema:
    """The request/response tensors for sprites of `model` on a T = `timesteps` schedule."""
    k, image = model.n_cfeat, (model.in_channels, model.height, model.height)
    c, h, w = image
    f32, obj = np.dtype(np.float32), np.dtype(object)
    context_dtype = _graph_dtype("unet", "c")
    noise_dtype = _graph_dtype("ddim_step", "x")
    inputs = (
        Field("context", context_dtype, (k,), "context row: one-hot, blend weights (finite, >= 0) or zeros "
              "(unconditional); give exactly one of context, class_name, class_index"),
        Field("class_name", obj, (1,), f"class name (or '{UNCONDITIONAL}')"),
        Field("class_index", np.dtype(np.int64), (1,), f"class index 0..{k - 1}"),
        Field("seed", SEED_DTYPE, (1,), "noise seed; the sprite equals Sampler.<sampler>([context], seed=seed) "
              "in-process; absent: a fresh seed, returned in used_seed"),
        Field("noise", noise_dtype, image, "explicit x_T (standard normal draws) instead of the seed's"),
        Field("step_noise", _graph_dtype("ddim_step", "z"), (timesteps, c, h, w),
              "explicit noise of every step (index i-1 for the step starting at i): DDPM, or DDIM, dpmpp "
              "and fast with eta > 0"),
        Field("n", np.dtype(np.int64), (1,), f"steps / network calls: 1..{timesteps} (ddim, dpmpp), one the export "
              "was fitted for (fast); default: the sampler's (published)", samplers=_taking("n")),
        Field("eta", f32, (1,), "stochasticity 0..1 (default 0: deterministic)", samplers=_taking("eta")),
        Field("guidance", f32, (1,), "classifier-free guidance weight >= 0 (default 0: off)"),
    )
    outputs = (
        Field("sprite", _graph_dtype("ddim_loop", "sample"), image, "the sprite, float32 in [-1, 1]"),
        Field("pixels", np.dtype(np.uint8), (h, w, 3), "the sprite as RGB pixels (H, W, 3)"),
        Field("used_seed", SEED_DTYPE, (1,), "the seed the sprite was drawn with (given or fresh)"),
        Field("error", obj, (1,), "empty on success; else the one-line reason this request was refused "
              "(set only when it shared a batch with valid requests; see docs/serving.md)"),
    )
    return Schema(inputs=inputs, outputs=outputs, classes=k, image=image, timesteps=timesteps)


PUBLISHED = "spritegen"  # the model config parameter holding `published(...)`


def fast_section(fast: Any) -> dict[str, Any] | None:
    """The export's fitted sampler (runtime.manifest_fields.FastSampler, or None) as published JSON:
    its solver, eta, default n and step indices per fitted call count (what a client needs to
    check n and draw a batch's noise as in-process); "student" when the export's network is a
    distilled student (then every other sampler is refused, as in-process)."""
    if fast is None:
        return None
    section = {"solver": fast.solver, "eta": fast.eta, "default_n": fast.default_n,
               "indices": {str(n): list(table) for n, table in fast.indices.items()}}
    return {**section, "student": {"steps": fast.default_n}} if fast.student else section


def served(fast: dict[str, Any] | None) -> tuple[str, ...]:
    """The samplers a service offers: every one, less FITTED when the export has no fitted sampler."""
    return tuple(name for name in SAMPLERS if name != FITTED or fast is not None)


def defaults(sampler: str, timesteps: int, fast: dict[str, Any] | None) -> dict[str, float | int]:
    """What a request to `sampler` gets for the arguments it omits (guidance included); n: the
    fitted sampler's recommended one, else STEP_DEFAULTS capped at T (as the Sampler resolves None)."""
    values: dict[str, float | int] = {"guidance": DEFAULTS["guidance"]}
    for arg in SAMPLER_ARGS[sampler]:
        if arg == "n":
            values[arg] = fast["default_n"] if sampler == FITTED and fast else min(STEP_DEFAULTS[sampler], timesteps)
        else:
            values[arg] = DEFAULTS[arg]
    return values


def published(io: Schema, class_names: tuple[str, ...], max_batch_size: int,
              fast: dict[str, Any] | None = None) -> dict[str, str]:
    """What a client needs to talk to a served model, as Triton model config `parameters`
    (strings): the export's classes, image, T, the samplers served with their arguments and
    defaults, the fitted sampler's tables (`fast_section`, or null)."""
    names = served(fast)
    text = json.dumps({"classes": list(class_names), "image": list(io.image), "timesteps": io.timesteps,
                       "samplers": {name: list(SAMPLER_ARGS[name]) for name in names},
                       "defaults": {name: defaults(name, io.timesteps, fast) for name in names},
                       FITTED: fast, "max_batch_size": max_batch_size})
    return {PUBLISHED: text}


@dataclass(frozen=True)
class Published:
    """A served model's `published` parameters, read back and checked (spritegen.client)."""

    class_names: tuple[str, ...]
    schema: Schema
    defaults: dict[str, dict[str, float | int]]  # sampler -> argument -> value
    samplers: dict[str, tuple[str, ...]]
    max_batch_size: int
    fast: dict[str, Any] | None = None  # fast_section's JSON; None: no fitted sampler served

    def indices(self, sampler: str, n: int) -> tuple[int, ...] | None:
        """The fitted sampler's step indices for n calls (None: FITTED not served, or not fitted for n)."""
        table = (self.fast or {}).get("indices", {}).get(str(n)) if sampler == FITTED else None
        return None if table is None else tuple(table)


def read_published(text: str) -> Published:
    """`published`'s JSON back, or ValueError naming what is off (a foreign or broken server)."""
    data = json.loads(text)
    names = tuple(str(n) for n in data["classes"])
    c, h, w = (int(v) for v in data["image"])
    timesteps, max_batch = int(data["timesteps"]), int(data["max_batch_size"])
    model = ModelConfig(in_channels=c, n_cfeat=len(names), height=h)
    if h != w or not names or not TIMESTEPS_LIMITS[0] <= timesteps <= TIMESTEPS_LIMITS[1] or max_batch < 1:
        raise ValueError(f"implausible published schema: image {(c, h, w)}, {len(names)} classes, T={timesteps}")
    model.validate()
    samplers = {str(k): tuple(str(a) for a in v) for k, v in dict(data["samplers"]).items()}
    fast = data.get(FITTED)
    if fast is not None:
        for table in dict(fast["indices"]).values():
            check_solver_indices(table, timesteps)  # ValueError for a broken table
    return Published(class_names=names, schema=schema(model, timesteps), max_batch_size=max_batch, fast=fast,
                     defaults={str(k): dict(v) for k, v in dict(data["defaults"]).items()}, samplers=samplers)
