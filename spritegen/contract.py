"""The facts every part of spritegen shares, kept in exactly one place.

Export writes an export directory by this contract, the runtime and the C++ example
read it, training labels sprites with these class names. Nothing here imports torch
or onnxruntime, so the runtime can use it too.

Symbols in shapes: B is the batch; GB is B without guidance and 2B with
classifier-free guidance (rows B..2B-1 then hold the unconditional context, zeros);
C, H, W, K are in_channels, height, height and n_cfeat of the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Context-vector order of the course's model (one-hot index = position here).
CLASS_NAMES: tuple[str, ...] = ("hero", "non-hero", "food", "spell", "side-facing")

# The name of a zero context row (no class: unconditional sampling) wherever a class name is
# accepted or shown (the CLI's --classes, served requests' class_name, context labels); so no
# export may use it as a class name.
UNCONDITIONAL = "unconditional"

# The file a W&B model artifact (and the bundled demo) stores its state_dict in.
CHECKPOINT_FILE = "context_model.pth"


@dataclass(frozen=True)
class ModelConfig:
    """ContextUnet hyperparameters, named as the course's run config names them."""

    in_channels: int = 3  # RGB
    n_feat: int = 64  # channels of the first feature map
    n_cfeat: int = 5  # context vector length = number of classes
    height: int = 16  # sprites are height x height

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Take the known keys of a (possibly larger) run config; ignore the rest."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in values.items() if k in known})

    def validate(self) -> "ModelConfig":
        """self, or ValueError naming the first hyperparameter outside MODEL_LIMITS (or one the
        pictures cannot show, IMAGE_CHANNELS, or the architecture cannot build: GroupNorm(8, n_feat) needs n_feat % 8 == 0, and the U-Net's
        /4 pooling to one pixel needs height % 4 == 0)."""
        for name, (low, high) in MODEL_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if self.in_channels not in IMAGE_CHANNELS:
            raise ValueError(f"in_channels must be one of {IMAGE_CHANNELS} (grey, RGB, RGBA: what a sprite can be "
                             f"shown as), got {self.in_channels}")
        if self.n_feat % 8:
            raise ValueError(f"n_feat must be a multiple of 8 (GroupNorm's 8 groups), got {self.n_feat}")
        if self.height % 4:
            raise ValueError(f"height must be a multiple of 4 (two /2 poolings, then /4 to one pixel), got {self.height}")
        return self


# Inclusive ranges ModelConfig.validate accepts, the one table of model limits: the exporter
# refuses a checkpoint outside them and the runtime a manifest outside them, so whatever
# exports also loads. Every ContextUnet these build fits in well under 1 GB of float32
# weights (n_feat 512 is ~100M parameters, 64x the course's 64). height: two /2 poolings
# then AvgPool2d(4) must leave one pixel, so height // 4 in 4..7.
MODEL_LIMITS: dict[str, tuple[int, int]] = {"in_channels": (1, 4), "n_feat": (8, 512), "n_cfeat": (1, 1024),
                                            "height": (16, 28)}
# Channel counts a sprite can have: grey, RGB, RGBA (what pictures and textures can show).
IMAGE_CHANNELS = (1, 3, 4)
# timesteps T: the course's 500, DDPM's 1000, with room; every export validates a DDPM-T chain
# and the manifest stores three float32 arrays of T + 1 values.
TIMESTEPS_LIMITS = (1, 10_000)


@dataclass(frozen=True)
class ScheduleConfig:
    """The course's linear beta schedule; the arrays are derived from these three."""

    timesteps: int = 500  # T
    beta1: float = 1e-4  # b_t at t = 0
    beta2: float = 0.02  # b_t at t = T

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ScheduleConfig":
        return cls(
            timesteps=int(values.get("timesteps", cls.timesteps)),
            beta1=float(values.get("beta1", cls.beta1)),
            beta2=float(values.get("beta2", cls.beta2)),
        )

    def validate(self) -> "ScheduleConfig":
        """self, or ValueError naming the first field out of range: timesteps in TIMESTEPS_LIMITS,
        0 < beta1 <= beta2 < 1 (finite), so every alpha and alpha-bar is in (0, 1)."""
        low, high = TIMESTEPS_LIMITS
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) or not low <= self.timesteps <= high:
            raise ValueError(f"timesteps must be an integer in {low}..{high}, got {self.timesteps!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
        if self.beta1 > self.beta2:
            raise ValueError(f"beta1 must not exceed beta2, got beta1={self.beta1!r} > beta2={self.beta2!r}")
        return self


DDIM_DEFAULT_STEPS = 25  # the course's ddim_n
DDPM_SAVE_RATE = 20  # the course's intermediate save rate


def ddim_pairs(timesteps: int, n: int) -> list[tuple[int, int]]:
    """(i, i_prev) for every DDIM step: i = T, T-s, ... while i > 0, s = T // n.

    The course computes i_prev = i - s, which goes negative when n does not divide T
    and then silently indexes the schedule from its end; we clamp the last step to 0
    (the clean image), so n = 7 takes 8 steps and ends exactly at t = 0.
    """
    if not 1 <= n <= timesteps:
        raise ValueError(f"DDIM needs 1 <= n <= {timesteps} steps, got n={n}")
    step = timesteps // n
    return [(i, max(i - step, 0)) for i in range(timesteps, 0, -step)]


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler every surface offers (runtime method, CLI --sampler, service requests): its name,
    the options it takes, and what it is, for help texts."""

    name: str
    takes_n: bool  # network calls / steps (--n)
    takes_eta: bool  # stochasticity in [0, 1] (--eta)
    doc: str


SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in (
    SamplerSpec("ddim", True, True, "DDIM, n steps (default 25); eta > 0 adds noise"),
    SamplerSpec("ddpm", False, False, "the course's DDPM: T steps"),
    SamplerSpec("dpmpp", True, True, "DPM-Solver++ 2M, n network calls (default 10); eta 1: its SDE form"),
    SamplerSpec("fast", True, False, "the export's few-step sampler fitted to its checkpoint; n: one it was "
                                     "fitted for (default: its recommended one)"),
)}

# Solvers an export's few-step sampler (the manifest's FAST_KEY section) may name: "dpmpp", DPM-Solver++ 2M
# on fitted indices; "ddim", first order (DDIM is exactly first-order DPM-Solver++, data prediction), which
# a distilled student's export names (its weights make one DDIM step per network call on its indices).
SOLVERS = ("dpmpp", "ddim")
FIRST_ORDER_SOLVERS = ("ddim",)
FAST_KEY = "fast"
# DPM-Solver++ (2M): the default number of network calls (docs/samplers.md has the measured table)
DPMPP_DEFAULT_STEPS = 10


def dpmpp_indices(timesteps: int, n: int) -> list[int]:
    """The n + 1 step indices T = i_0 > i_1 > ... > i_n = 0 of an n-call DPM-Solver++ run,
    evenly spaced in time: i_k = floor(T (n - k) / n), integer arithmetic, so every runtime
    (numpy, C++, JavaScript) computes the same list. A fitted table (the manifest's "fast"
    section) replaces this list with one optimised for the checkpoint."""
    if not 1 <= n <= timesteps:
        raise ValueError(f"DPM-Solver++ needs 1 <= n <= {timesteps} steps, got n={n}")
    return [timesteps * (n - k) // n for k in range(n + 1)]


def solver_triples(indices: list[int] | tuple[int, ...], first_order: bool = False) -> list[tuple[int, int, int]]:
    """(i, i_next, i_last) for each step of a solver run over `indices` (strictly decreasing,
    first T, last 0): the step from i to i_next, i_last the index of the step before (i itself
    on the first step, which makes that step first order: there is no earlier prediction).
    `first_order`: i_last = i on every step, so every step is first order (DDIM, FIRST_ORDER_SOLVERS)."""
    return [(indices[k], indices[k + 1], indices[k if first_order else max(k - 1, 0)])
            for k in range(len(indices) - 1)]


def check_solver_indices(indices: object, timesteps: int) -> tuple[int, ...]:
    """`indices` as a tuple, or ValueError: integers, strictly decreasing from T to 0, at least
    two (one network call). What a manifest's fitted table and an explicit list must be."""
    if not isinstance(indices, (list, tuple)) or len(indices) < 2 or len(indices) > timesteps + 1:
        raise ValueError(f"step indices must be a list of 2..{timesteps + 1} integers from T={timesteps} "
                         "down to 0")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in indices):
        raise ValueError("step indices must be integers")
    if indices[0] != timesteps or indices[-1] != 0 or any(a <= b for a, b in zip(indices, indices[1:])):
        raise ValueError(f"step indices must fall strictly from T={timesteps} to 0")
    return tuple(indices)


def ddpm_keeps(i: int, timesteps: int, save_rate: int = DDPM_SAVE_RATE) -> bool:
    """Whether DDPM keeps the state after step i as an intermediate (the course's rule)."""
    return i % save_rate == 0 or i == timesteps or i < 8


# ---------------------------------------------------------------- export directory
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "spritegen-export/1"


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output: dtype and symbolic shape (see module doc)."""

    name: str
    dtype: str  # "float32" or "int64"
    shape: tuple[str, ...]
    doc: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "doc": self.doc}


@dataclass(frozen=True)
class GraphSpec:
    """One exported file: its fixed name, inputs, outputs, and how to call it."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "doc": self.doc,
        }


_IMAGE = ("B", "C", "H", "W")
_X = TensorSpec("x", "float32", _IMAGE, "current state x_i (x_T: standard normal noise)")
_C = TensorSpec(
    "c", "float32", ("GB", "K"),
    "context rows for the batch; with guidance, B more rows of unconditional context (zeros)",
)
_W = TensorSpec("w", "float32", ("1",), "guidance weight: eps = (1+w)*eps(c) - w*eps(uncond); 0 = off")
_Z = TensorSpec("z", "float32", _IMAGE, "standard normal noise added by this step")
_I = TensorSpec("i", "int64", ("1",), "step index i in 1..T (the network sees t = i/T)")
_X_PREV = TensorSpec("x_prev", "float32", _IMAGE, "state after the step (unclipped)")

GRAPHS: dict[str, GraphSpec] = {
    "unet": GraphSpec(
        "unet.onnx",
        inputs=(
            TensorSpec("x", "float32", _IMAGE, "noisy image x_i"),
            TensorSpec("t", "float32", ("B",), "normalised time i/T"),
            TensorSpec("c", "float32", ("B", "K"), "context: one-hot, blend, or zeros"),
        ),
        outputs=(TensorSpec("eps", "float32", _IMAGE, "predicted noise"),),
        doc="the noise predictor eps(x, t, c)",
    ),
    "ddpm_step": GraphSpec(
        "ddpm_step.onnx",
        inputs=(_X, _C, _I, _Z, _W),
        outputs=(_X_PREV,),
        doc="one DDPM step i -> i-1; call for i = T..1 with z = step_noise[i-1] (ignored at i = 1)",
    ),
    "ddim_step": GraphSpec(
        "ddim_step.onnx",
        inputs=(
            _X, _C, _I,
            TensorSpec("i_prev", "int64", ("1",), "index after the step (see ddim_pairs)"),
            TensorSpec("eta", "float32", ("1",), "0 = deterministic DDIM; >0 adds eta-scaled noise"),
            TensorSpec("z", "float32", _IMAGE, "standard normal noise; ignored when eta = 0"),
            _W,
        ),
        outputs=(_X_PREV,),
        doc="one DDIM step i -> i_prev; call for (i, i_prev) in ddim_pairs(T, n), z = step_noise[i-1]",
    ),
    "solver_step": GraphSpec(
        "solver_step.onnx",
        inputs=(
            _X,
            TensorSpec("m", "float32", _IMAGE, "the previous step's x0 prediction (any values on the first step)"),
            _C, _I,
            TensorSpec("i_next", "int64", ("1",), "index after the step (0 on the last)"),
            TensorSpec("i_last", "int64", ("1",), "index of the previous step; = i on the first (first order)"),
            TensorSpec("eta", "float32", ("1",), "0 = DPM-Solver++ 2M (ODE); 1 = SDE-DPM-Solver++ 2M; between: mixed"),
            TensorSpec("z", "float32", _IMAGE, "standard normal noise; ignored when eta = 0"),
            _W,
        ),
        outputs=(
            TensorSpec("x_next", "float32", _IMAGE, "state after the step (unclipped)"),
            TensorSpec("x0", "float32", _IMAGE, "this step's x0 prediction: the next call's m"),
        ),
        doc="one DPM-Solver++ (2M) step i -> i_next (eta > 0: SDE variant); call for (i, i_next, i_last) in "
            "solver_triples(indices), m = the previous call's x0, z = step_noise[i-1]",
    ),
    "ddim_loop": GraphSpec(
        "ddim_loop.onnx",
        inputs=(TensorSpec("x", "float32", _IMAGE, "x_T: standard normal noise"), _C, _W),
        outputs=(TensorSpec("sample", "float32", _IMAGE, "final sprites, clipped to [-1, 1]"),),
        doc="the whole deterministic DDIM sampler with the manifest's ddim_loop_steps steps",
    ),
}
FP16_UNET_FILE = "unet_fp16.onnx"  # same contract as GRAPHS["unet"], fp16 inside
INT8_UNET_FILE = "unet_int8.onnx"  # same contract as GRAPHS["unet"], int8 (QDQ) inside
# The network file of each precision; fp16 and int8 are written on request (--fp16, --int8).
UNET_FILES = {"fp32": GRAPHS["unet"].file, "fp16": FP16_UNET_FILE, "int8": INT8_UNET_FILE}
TORCHSCRIPT_FILE = "unet.ts"  # forward(x, t, c) as GRAPHS["unet"]


class GraphMeta:
    """Keys of the facts every exported ONNX file carries in its metadata_props (JSON values
    for non-strings). The exporter writes them and the runtime checks them against the
    manifest, so both read the names from here."""

    FORMAT = "spritegen.format"  # MANIFEST_FORMAT
    VERSION = "spritegen.version"  # the spritegen version that exported the file
    GRAPH = "graph"  # the GRAPHS key of the file
    HYPERPARAMETERS = "hyperparameters"  # ModelConfig.to_dict()
    CLASS_NAMES = "class_names"
    SCHEDULE = "schedule"  # ScheduleConfig.to_dict()
    LOOP_STEPS = "ddim_loop_steps"  # ddim_loop.onnx only: its fixed n
    SOURCE = "source"  # the checkpoint's provenance (W&B name, file, bundled)
    CHECKPOINT_SHA256 = "checkpoint_sha256"  # sha256 of the state_dict file the graph was traced from
    T_DEFINITION = "t_definition"  # how the network's t derives from the step index
    SHORTCUT_SEED = "shortcut_seed"  # the seed of the pinned init_conv shortcut
    SHORTCUT_FROM_CHECKPOINT = "shortcut_from_checkpoint"  # false: drawn from SHORTCUT_SEED
    LOOP_IMPLEMENTATION = "ddim_loop_implementation"  # ddim_loop.onnx only: "unrolled"
    PRECISION = "precision"  # unet_fp16.onnx / unet_int8.onnx only: what is reduced, what stays fp32


# ---------------------------------------------------------------- portable noise
@dataclass(frozen=True)
class NoiseSpec:
    """The seeded standard-normal generator every runtime (numpy, C++, JavaScript) implements
    bit for bit: Philox4x32-10 bits, then a Box-Muller built from IEEE-754 float64 + - * / and
    sqrt only (no libm log/sin/cos, which differ between math libraries). docs/noise.md is
    the specification; `spritegen.runtime.noise` the reference implementation.

    Streams: stream 0 is x_T; stream i (1..T) is the noise of the sampler step that starts
    at index i. Seeds are integers in [0, 2^64); key = (seed mod 2^32, seed >> 32)."""

    generator: str = "spritegen-normal"  # recorded in the manifest with `version`
    version: int = 1
    philox_m: tuple[int, int] = (0xD2511F53, 0xCD9E8D57)  # round multipliers M0, M1
    philox_w: tuple[int, int] = (0x9E3779B9, 0xBB67AE85)  # key bumps W0, W1 (Weyl sequence)
    philox_rounds: int = 10
    normals_per_block: int = 4  # one Philox block (4 x uint32) -> 2 Box-Muller pairs
    sqrt2: float = 1.4142135623730951  # log: mantissa f is folded into [sqrt2/2, sqrt2]
    ln2: float = 0.6931471805599453
    half_pi: float = 1.5707963267948966
    log_terms: int = 10  # L[0..10] = 1 / (2j + 1): log(f) = 2 atanh(s), s = (f-1)/(f+1)
    trig_terms: int = 10  # S[0..10], C[0..10]: Taylor series of sin and cos on [0, pi/2)
    x_t_stream: int = 0
    seed_bits: int = 64
    stream_bits: int = 32

    def manifest_entry(self) -> dict[str, Any]:
        """What an export's manifest records under "noise" (MANIFEST_NOISE_KEY)."""
        return {"generator": self.generator, "version": self.version}


NOISE = NoiseSpec()
MANIFEST_NOISE_KEY = "noise"
