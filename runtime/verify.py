"""Verify an export's graph files before any session is built from them.

Sampler.load reads every graph file once: its sha256 and size against the manifest
(runtime.manifest), its own metadata (read from the bytes by runtime.onnx_meta, so no
session is built for graphs used later or never) against the manifest's facts, and the
checkpoint each file records: one export, one checkpoint. A file copied in from
another export of the same architecture and rehashed passes every other check and
samples different sprites from one seed (measured: 1.89 apart), so it is refused here.
Exports written before graphs recorded `GraphMeta.CHECKPOINT_SHA256` are checked
through the sha256 in their `GraphMeta.SOURCE`; when nothing records a checkpoint the
check is skipped, but any file that disagrees with another, or is silent while others
record one, is refused.
"""

from __future__ import annotations

from pathlib import Path

from spritegen.contract import GRAPHS, UNET_FILES
from spritegen.errors import ExportDirError
from spritegen.runtime.manifest import Manifest
from spritegen.runtime.onnx_meta import NotOnnx, metadata
from spritegen.runtime.session import Graph


def check_files(manifest: Manifest, keep: set[str]) -> tuple[str | None, dict[str, bytes]]:
    """Hash and metadata of every graph file of the export (module doc of runtime.manifest), and
    one checkpoint for all: returns (that checkpoint's sha256 or None when nothing records it,
    the verified bytes of the files in `keep`, which load opens right after)."""
    digests: dict[str, str | None] = {}
    verified: dict[str, bytes] = {}
    for file in sorted({spec.file for spec in GRAPHS.values()} | set(UNET_FILES.values())):
        if file in manifest.sha256:
            data = manifest.read_file(file)
            digests[file] = file_checkpoint(manifest, file, data)
            if file in keep:
                verified[file] = data
    recorded = {digest for digest in digests.values() if digest is not None}
    if manifest.checkpoint_sha256 is not None:
        recorded.add(manifest.checkpoint_sha256)
    silent = sorted(file for file, digest in digests.items() if digest is None)
    if len(recorded) > 1 or (recorded and silent):
        found = ", ".join(f"{file}: {str(digest)[:12]}" for file, digest in sorted(digests.items()))
        raise ExportDirError(f"the files of export {manifest.directory} come from different checkpoints ({found}; "
                             f"manifest: {str(manifest.checkpoint_sha256)[:12]}): files of different exports were "
                             "mixed; re-export")
    return next(iter(recorded), None), verified


def read_graph(manifest: Manifest, file: str, checkpoint: str | None) -> bytes:
    """The verified bytes of graph file `file`, its metadata checked as at load."""
    precision = next((p for p, f in UNET_FILES.items() if f == file and p != "fp32"), None)
    hint = "re-export with spritegen-export" + (f" --{precision}" if precision else "")
    data = manifest.read_file(file, hint=hint)
    if file_checkpoint(manifest, file, data) != checkpoint:
        raise ExportDirError(f"{manifest.directory / file} was exported from another checkpoint than the rest of "
                             "the export; re-export")
    return data


def file_checkpoint(manifest: Manifest, file: str, data: bytes) -> str | None:
    """Check graph file `file`'s own metadata against the manifest; the checkpoint it records."""
    try:
        found = metadata(data)
    except NotOnnx as exc:
        raise ExportDirError(f"{manifest.directory / file} is not an ONNX model ({exc}); re-export") from None
    graph = "unet" if file in UNET_FILES.values() else file.removesuffix(".onnx")
    return manifest.check_metadata(graph, file, found)


def check_io(graph: Graph, name: str, path: Path) -> None:
    """The session's input/output names must be the contract's (a foreign ONNX file is refused)."""
    spec = GRAPHS[name]
    found = ([i.name for i in graph.session.get_inputs()], [o.name for o in graph.session.get_outputs()])
    wanted = ([s.name for s in spec.inputs], [s.name for s in spec.outputs])
    if sorted(found[0]) != sorted(wanted[0]) or sorted(found[1]) != sorted(wanted[1]):
        raise ExportDirError(f"{path} has inputs {found[0]} -> {found[1]}, but the contract says "
                             f"{wanted[0]} -> {wanted[1]}; re-export with spritegen-export")
