"""Read an export directory's manifest.json and verify the files the runtime opens.

The manifest is the runtime's only source of model facts (hyperparameters, class
names, the float32 schedule arrays, the loop graph's step count) so sampling never
recomputes the schedule and cannot drift from what was exported. Each graph file is
checked against the sha256 the exporter recorded, and the bytes that were hashed are
the bytes handed to ONNX Runtime, so a file swapped after the check cannot slip in.

The manifest also names the seeded noise generator the export's seeds mean
(contract.NOISE, docs/noise.md): one this runtime does not implement is refused, so a
seed never silently means different noise. A manifest without the key predates the
record and gets the current generator: the graphs do not depend on it, and no runtime
reproduces the seeds of those versions anyway (they used numpy's default_rng).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spritegen.contract import (GRAPHS, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_NOISE_KEY, NOISE, ModelConfig,
                                ScheduleConfig)
from spritegen.errors import ExportDirError
from spritegen.runtime import artifact


@dataclass(frozen=True)
class Schedule:
    """Float32 arrays of shape (T+1,), index 0..T, exactly as the exporter stored them."""

    config: ScheduleConfig
    b_t: np.ndarray
    a_t: np.ndarray
    ab_t: np.ndarray


@dataclass(frozen=True)
class Manifest:
    """What the runtime needs from manifest.json (the raw dict stays in `data`)."""

    directory: Path
    model: ModelConfig
    class_names: tuple[str, ...]
    schedule: Schedule
    sha256: dict[str, str]  # file name -> hex digest, for every file the exporter wrote
    ddim_loop_steps: int | None  # the fixed n baked into ddim_loop.onnx
    data: dict[str, Any] = field(repr=False)

    def has(self, graph: str) -> bool:
        """Whether the export holds graph `graph` (a key of contract.GRAPHS)."""
        return GRAPHS[graph].file in self.sha256

    def check_graph(self, graph: str, metadata: dict[str, str], image_dims: list, file: str | None = None) -> None:
        """Refuse a manifest whose facts disagree with a (hash-verified) graph's own metadata
        or input shape: a hand-edited manifest must not silently change what is sampled.
        `file`: the file read for `graph` when not its own (unet_int8.onnx for "unet")."""
        name = file or GRAPHS[graph].file
        facts = {"hyperparameters": self.model.to_dict(), "class_names": list(self.class_names),
                 "schedule": self.schedule.config.to_dict()}
        if graph == "ddim_loop":
            facts["ddim_loop_steps"] = self.ddim_loop_steps
        for key, ours in facts.items():
            if key in metadata and not _same(json.loads(metadata[key]), ours):
                raise ExportDirError(f"{self.directory / MANIFEST_FILE} says {key} = {ours} but {name} was exported "
                                     f"with {metadata[key]}: the manifest was edited; re-export")
        want = [self.model.in_channels, self.model.height, self.model.height]
        if [d for d in image_dims[1:] if isinstance(d, int)] not in ([], want):
            raise ExportDirError(f"{self.directory / MANIFEST_FILE} says sprites are {want} but {name} takes "
                                 f"{image_dims}: the manifest was edited; re-export")

    def read_graph(self, graph: str) -> bytes:
        """The verified bytes of graph `graph`; ExportDirError when missing or altered."""
        return self.read_file(GRAPHS[graph].file)

    def read_file(self, name: str, hint: str = "re-export with spritegen-export") -> bytes:
        """The verified bytes of the export's file `name`; ExportDirError when missing or altered."""
        if name not in self.sha256:
            raise ExportDirError(f"export {self.directory} has no {name}; {hint}")
        return read_verified(self.directory / name, self.sha256[name])


def load_manifest(export_dir: str | Path) -> Manifest:
    """Parse and check `export_dir/manifest.json`; ExportDirError with one line otherwise.
    `export_dir` may name a W&B export artifact, wandb:ENTITY/PROJECT/NAME:ALIAS (runtime.artifact)."""
    if artifact.is_artifact(export_dir):
        export_dir = artifact.download_export(str(export_dir))
    directory = Path(export_dir)
    if not directory.is_dir():
        raise ExportDirError(f"export directory {directory} does not exist; create one with spritegen-export")
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ExportDirError(f"{directory} is not a spritegen export (no {MANIFEST_FILE}); "
                             "create one with spritegen-export")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportDirError(f"{path} is not valid JSON ({exc}); re-export with spritegen-export") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ExportDirError(f"{path} is not a {MANIFEST_FORMAT} manifest (format {found!r}); "
                             "re-export with this version of spritegen-export")
    _check_noise(path, data.get(MANIFEST_NOISE_KEY, NOISE.manifest_entry()))
    try:
        return _parse(directory, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportDirError(f"{path} is incomplete or malformed ({type(exc).__name__}: {exc}); "
                             "re-export with spritegen-export") from None


def _check_noise(path: Path, entry: Any) -> None:
    """The manifest's noise generator must be the one this runtime implements (module doc)."""
    ours = NOISE.manifest_entry()
    if not isinstance(entry, dict) or {k: entry.get(k) for k in ours} != ours:
        raise ExportDirError(f"{path} names the noise generator {json.dumps(entry)}, but this spritegen implements "
                             f"{json.dumps(ours)}; sample it with the spritegen version that exported it")


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, refused unless their sha256 equals the manifest's."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportDirError(f"cannot read {path} ({exc.strerror}); re-export with spritegen-export") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ExportDirError(f"{path} does not match its manifest (sha256 {actual[:12]}..., manifest says "
                             f"{str(expected_sha256)[:12]}...): the file was altered or swapped; re-export")
    return data


def _parse(directory: Path, data: dict[str, Any]) -> Manifest:
    model_entry = data["model"]
    model = ModelConfig.from_dict(model_entry.get("hyperparameters", model_entry))
    names = tuple(str(n) for n in data["class_names"])
    if len(names) != model.n_cfeat:
        raise ValueError(f"{len(names)} class names for n_cfeat={model.n_cfeat}")
    schedule = _schedule(data["schedule"])
    loop = data.get("ddim_loop_steps")
    return Manifest(directory=directory, model=model, class_names=names, schedule=schedule,
                    sha256=_digests(data["files"]), ddim_loop_steps=None if loop is None else int(loop),
                    data=data)


def _schedule(entry: dict[str, Any]) -> Schedule:
    config = ScheduleConfig.from_dict(entry)
    arrays = entry.get("arrays", entry)
    b_t, a_t, ab_t = (np.asarray(arrays[k], dtype=np.float32) for k in ("b_t", "a_t", "ab_t"))
    for name, array in (("b_t", b_t), ("a_t", a_t), ("ab_t", ab_t)):
        if array.shape != (config.timesteps + 1,) or not np.isfinite(array).all():
            raise ValueError(f"schedule array {name} must hold {config.timesteps + 1} finite numbers")
    _check_derived(config, b_t, a_t, ab_t)
    for array in (b_t, a_t, ab_t):
        array.setflags(write=False)
    return Schedule(config=config, b_t=b_t, a_t=a_t, ab_t=ab_t)


def _check_derived(config: ScheduleConfig, b_t: np.ndarray, a_t: np.ndarray, ab_t: np.ndarray) -> None:
    """The arrays must follow from (T, beta1, beta2) by the course's formulas. Recomputed in
    numpy only to check (sampling uses the stored arrays); 1e-5 relative covers numpy vs
    torch float32 rounding of the cumulative product, far below any meaningful edit."""
    f32 = np.float32
    b = (f32(config.beta2) - f32(config.beta1)) * np.linspace(0, 1, config.timesteps + 1, dtype=f32) + f32(config.beta1)
    ab = np.exp(np.cumsum(np.log(f32(1) - b)))
    ab[0] = 1
    for name, stored, derived in (("b_t", b_t, b), ("a_t", a_t, 1 - b), ("ab_t", ab_t, ab)):
        if not np.allclose(stored, derived, rtol=1e-5, atol=1e-7):
            raise ValueError(f"schedule array {name} does not follow from timesteps={config.timesteps}, "
                             f"beta1={config.beta1}, beta2={config.beta2} (edited?)")


def _same(a: Any, b: Any) -> bool:
    """JSON-equal, floats compared to 1e-9 relative (they round-trip through JSON)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-30)
    return a == b


def _digests(files: Any) -> dict[str, str]:
    """{name: hex} from either {name: hex} or {name: {"sha256": hex, ...}}."""
    return {str(name): str(value["sha256"] if isinstance(value, dict) else value)
            for name, value in dict(files).items()}
