"""Read an export directory's manifest.json and verify the files the runtime opens.

The manifest is the runtime's only source of model facts (hyperparameters, class
names, the float32 schedule arrays, the loop graph's step count) so sampling never
recomputes the schedule and cannot drift from what was exported. It comes from
elsewhere, so every field the runtime reads is checked for type and range (bounds in
runtime.limits) before use, and the file itself is read bounded in size and nesting.
Each graph file is checked against the sha256 and size the exporter recorded, read
only if it is a regular file no larger than recorded, and the bytes that were hashed
are the bytes handed to ONNX Runtime, so a file swapped after the check cannot slip in.
Each graph's own metadata must agree with the manifest, including the checkpoint it
was traced from: one export, one checkpoint.

The manifest also names the seeded noise generator the export's seeds mean
(contract.NOISE, docs/noise.md): one this runtime does not implement is refused, so a
seed never silently means different noise. A manifest without the key predates the
record and gets the current generator: the graphs do not depend on it, and no runtime
reproduces the seeds of those versions anyway (they used numpy's default_rng).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spritegen.contract import (GRAPHS, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_NOISE_KEY, NOISE, GraphMeta,
                                ModelConfig, ScheduleConfig)
from spritegen.errors import ExportDirError, shown
from spritegen.files import is_sha256, read_regular_file
from spritegen.jsonfile import parse_json
from spritegen.runtime import artifact, limits
from spritegen.runtime.manifest_fields import (FastSampler, FieldError, checkpoint_digest, fast_sampler, files, loop_steps,
                                               model_config, names, schedule_arrays, schedule_config)

REEXPORT = "re-export with spritegen-export"


@dataclass(frozen=True)
class Schedule:
    """Float32 arrays of shape (T+1,), index 0..T, exactly as the exporter stored them."""

    config: ScheduleConfig
    b_t: np.ndarray
    a_t: np.ndarray
    ab_t: np.ndarray


@dataclass(frozen=True)
class Manifest:
    """What the runtime needs from manifest.json, every field checked (module doc)."""

    directory: Path
    model: ModelConfig
    class_names: tuple[str, ...]
    schedule: Schedule
    sha256: dict[str, str]  # file name -> hex digest, for every file the exporter wrote
    sizes: dict[str, int | None]  # file name -> bytes recorded (None: an export that recorded none)
    ddim_loop_steps: int | None  # the fixed n baked into ddim_loop.onnx
    checkpoint_sha256: str | None  # the checkpoint the export was made from (None: not recorded)
    fast: FastSampler | None = None  # the fitted few-step sampler (None: the export has none)

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_FILE

    def has(self, graph: str) -> bool:
        """Whether the export holds graph `graph` (a key of contract.GRAPHS)."""
        return GRAPHS[graph].file in self.sha256

    def read_file(self, name: str, hint: str = REEXPORT) -> bytes:
        """The verified bytes of the export's file `name`; ExportDirError when missing, not a
        regular file, larger than recorded, or altered."""
        if name not in self.sha256:
            raise ExportDirError(f"export {self.directory} has no {name}; {hint}")
        recorded = self.sizes.get(name)
        bound = limits.MAX_GRAPH_BYTES if recorded is None else min(recorded, limits.MAX_GRAPH_BYTES)
        _check_size(self.directory / name, recorded)
        try:
            data = read_regular_file(self.directory / name, bound, ExportDirError, "export file")
        except ExportDirError as exc:
            raise ExportDirError(f"{exc}; {hint}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256[name]:
            raise ExportDirError(f"{self.directory / name} does not match its manifest (sha256 {actual[:12]}..., "
                                 f"manifest says {self.sha256[name][:12]}...): the file was altered or swapped; "
                                 "re-export")
        return data

    def check_metadata(self, graph: str, file: str, metadata: dict[str, str]) -> str | None:
        """Refuse a graph file whose own metadata disagrees with the manifest (a hand-edited
        manifest, or a file copied in from another export and rehashed). Returns the
        checkpoint digest the file records (None for exports from before it was recorded)."""
        facts: dict[str, Any] = {GraphMeta.HYPERPARAMETERS: self.model.to_dict(),
                                 GraphMeta.CLASS_NAMES: list(self.class_names),
                                 GraphMeta.SCHEDULE: self.schedule.config.to_dict()}
        if graph == "ddim_loop":
            facts[GraphMeta.LOOP_STEPS] = self.ddim_loop_steps
        for key, ours in facts.items():
            if key in metadata and not _same(_meta_json(metadata[key], file, key), ours):
                raise ExportDirError(f"{self.path} says {key} = {ours} but {file} was exported "
                                     f"with {metadata[key][:200]}: the manifest was edited; re-export")
        kind = metadata.get(GraphMeta.GRAPH)
        if kind is not None and kind != file.removesuffix(".onnx"):
            raise ExportDirError(f"{self.directory / file} holds the exporter's {kind[:40]!r} graph, not "
                                 f"{file}: files of the export were swapped; re-export")
        theirs = _graph_checkpoint(metadata, file)
        if theirs is not None and self.checkpoint_sha256 is not None and theirs != self.checkpoint_sha256:
            raise ExportDirError(f"{self.directory / file} was exported from checkpoint {theirs[:12]}... but "
                                 f"{self.path} says {self.checkpoint_sha256[:12]}...: files of different "
                                 "exports were mixed; re-export")
        return theirs

    def check_dims(self, file: str, image_dims: list) -> None:
        """The graph's input image shape must be the manifest's (C, H, H)."""
        want = [self.model.in_channels, self.model.height, self.model.height]
        if [d for d in image_dims[1:] if isinstance(d, int)] not in ([], want):
            raise ExportDirError(f"{self.path} says sprites are {want} but {file} takes "
                                 f"{image_dims}: the manifest was edited; re-export")


def load_manifest(export_dir: str | Path) -> Manifest:
    """Parse and check `export_dir/manifest.json`; ExportDirError with one line otherwise.
    `export_dir` may name a W&B export artifact, wandb:ENTITY/PROJECT/NAME:ALIAS (runtime.artifact)."""
    if not isinstance(export_dir, (str, os.PathLike)) or export_dir == "":
        raise ExportDirError(f"export_dir must be a directory path (str or os.PathLike), got {shown(export_dir)}")
    if artifact.is_artifact(export_dir):
        export_dir = artifact.download_export(str(export_dir))
    directory = Path(export_dir)
    if not directory.is_dir():
        raise ExportDirError(f"export directory {directory} does not exist; create one with spritegen-export")
    path = directory / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        raise ExportDirError(f"{directory} is not a spritegen export (no {MANIFEST_FILE}); "
                             "create one with spritegen-export")
    raw = read_regular_file(path, limits.MAX_MANIFEST_BYTES, ExportDirError, "manifest")
    data = parse_json(raw, ExportDirError, str(path))
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ExportDirError(f"{path} is not a {MANIFEST_FORMAT} manifest (format {str(found)[:80]!r}); "
                             "re-export with this version of spritegen-export")
    _check_noise(path, data.get(MANIFEST_NOISE_KEY, NOISE.manifest_entry()))
    try:
        return _parse(directory, data)
    except FieldError as exc:
        raise ExportDirError(f"{path} is incomplete or malformed ({exc}); {REEXPORT}") from None


def _check_noise(path: Path, entry: Any) -> None:
    """The manifest's noise generator must be the one this runtime implements (module doc)."""
    ours = NOISE.manifest_entry()
    if not isinstance(entry, dict) or {k: entry.get(k) for k in ours} != ours:
        found = json.dumps(entry)
        raise ExportDirError(f"{path} names the noise generator {found[:200]}, but this spritegen implements "
                             f"{json.dumps(ours)}; sample it with the spritegen version that exported it")


def _parse(directory: Path, data: dict[str, Any]) -> Manifest:
    model = model_config(data)
    config = schedule_config(data)
    digests, sizes = files(data)
    has_loop = GRAPHS["ddim_loop"].file in digests
    return Manifest(directory=directory, model=model, class_names=names(data, model.n_cfeat),
                    schedule=_schedule(config, schedule_arrays(data, config.timesteps)), sha256=digests,
                    sizes=sizes, ddim_loop_steps=loop_steps(data, config.timesteps, has_loop),
                    checkpoint_sha256=checkpoint_digest(data), fast=fast_sampler(data, config.timesteps))


def _schedule(config: ScheduleConfig, arrays: dict[str, list[float]]) -> Schedule:
    b_t, a_t, ab_t = (np.asarray(arrays[k], dtype=np.float32) for k in ("b_t", "a_t", "ab_t"))
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
            raise FieldError(f"schedule array {name} does not follow from timesteps={config.timesteps}, "
                             f"beta1={config.beta1}, beta2={config.beta2} (edited?)")


def _check_size(path: Path, recorded: int | None) -> None:
    """A regular file whose size is not the recorded one was altered: say so before reading it
    (read_regular_file still enforces the bound on the descriptor it reads)."""
    try:
        info = os.stat(path)
    except OSError:
        return  # read_regular_file reports it
    if recorded is not None and stat.S_ISREG(info.st_mode) and info.st_size != recorded:
        raise ExportDirError(f"{path} does not match its manifest ({info.st_size} bytes, manifest says {recorded}): "
                             "the file was altered or swapped; re-export")


def _meta_json(value: str, file: str, key: str) -> Any:
    """A JSON metadata value of a graph file, bounded like the manifest."""
    return parse_json(value.encode("utf-8"), ExportDirError, f"metadata {key!r} of {file}")


def _graph_checkpoint(metadata: dict[str, str], file: str) -> str | None:
    """The checkpoint sha256 a graph file records: GraphMeta.CHECKPOINT_SHA256, else the sha256 in
    its GraphMeta.SOURCE (exports from before the dedicated key); None when neither is there."""
    digest = metadata.get(GraphMeta.CHECKPOINT_SHA256)
    if digest is None and GraphMeta.SOURCE in metadata:
        source = _meta_json(metadata[GraphMeta.SOURCE], file, GraphMeta.SOURCE)
        digest = (source.get(GraphMeta.CHECKPOINT_SHA256) or source.get("sha256")) if isinstance(source, dict) else None
    if digest is not None and not is_sha256(digest):
        raise ExportDirError(f"{file} records checkpoint sha256 {str(digest)[:80]!r}, not 64 hex digits; re-export")
    return digest


def _same(a: Any, b: Any) -> bool:
    """JSON-equal, floats compared to 1e-9 relative (they round-trip through JSON)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        try:
            a, b = float(a), float(b)
        except OverflowError:  # a JSON integer beyond float range: not a fact the exporter wrote
            return False
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-30)
    return a == b
