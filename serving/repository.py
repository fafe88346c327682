"""`spritegen triton-repo EXPORT OUT`: a Triton model repository for the ONNX Runtime backend.

For GPU fleets that run Triton's own onnxruntime backend, no Python: one model directory
per graph, `<name>/config.pbtxt` + `<name>/1/model.onnx` (the export's hash-verified
bytes). Every config is built as Triton's own `ModelConfig` protobuf (from tritonclient)
from the IO contract's `GRAPHS` and the export's model config, then written as text:
names, dtypes and dims are never retyped.

Batching, per graph, from its contract shapes:
- A graph whose every input and output starts with the batch symbol B is batchable:
  `max_batch_size` > 0, dims without the batch, Triton's dynamic batcher on. `unet`
  is (its `t` is (B,): dims [1] reshaped to [] per request).
- `ddim_loop` is not: `c` has GB rows (B conditional, then B unconditional rows with
  guidance) and `w` is one weight for the whole call, so concatenating requests along
  dimension 0, which is all Triton's batcher can do, would interleave conditional and
  unconditional rows and mix weights. It gets `max_batch_size: 0` with explicit -1
  dims: a request carries its own batch (B sprites), Triton runs requests side by side
  on its instances. Merging requests needs the PyTriton route (`spritegen serve`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spritegen.contract import GRAPHS, GraphSpec, TensorSpec
from spritegen.errors import OutputError, SpriteGenError
from spritegen.runtime.manifest import Manifest, load_manifest
from spritegen.runtime.verify import check_files
from spritegen.serving.options import ServeOptions

REPO_GRAPHS = ("ddim_loop", "unet")  # the whole sampler, and the network for clients with their own loop
MODEL_PREFIX = "spritegen_"
MODEL_FILE = "model.onnx"
VERSION = "1"
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64"}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclass(frozen=True)
class RepoOptions:
    max_batch_size: int = ServeOptions.max_batch_size  # for batchable graphs (unet)
    queue_delay_us: int = ServeOptions.queue_delay_us
    max_queue_size: int = ServeOptions.max_queue_size
    instances: int = ServeOptions.instances  # per device
    kind: str = "gpu"


def model_name(graph: str) -> str:
    return MODEL_PREFIX + graph


def batchable(spec: GraphSpec) -> bool:
    """Whether Triton's batcher may concatenate requests of this graph along dimension 0."""
    return all(t.shape and t.shape[0] == "B" for t in (*spec.inputs, *spec.outputs))


def model_config(graph: str, manifest: Manifest, options: RepoOptions):
    """Triton's ModelConfig protobuf for export graph `graph` (module doc)."""
    from tritonclient.grpc import model_config_pb2 as pb

    spec = GRAPHS[graph]
    sizes = _sizes(manifest)
    batched = batchable(spec)
    config = pb.ModelConfig(name=model_name(graph), platform="onnxruntime_onnx", backend="onnxruntime",
                            max_batch_size=options.max_batch_size if batched else 0,
                            default_model_filename=MODEL_FILE)
    for tensors, add in ((spec.inputs, config.input.add), (spec.outputs, config.output.add)):
        for tensor in tensors:
            entry = add(name=tensor.name, data_type=TRITON_DTYPES[tensor.dtype])
            dims = _dims(tensor, sizes)[1 if batched else 0:]
            entry.dims.extend(dims or [1])
            if batched and not dims:
                entry.reshape.SetInParent()  # (B,) tensor: [1] per request, reshaped to a scalar
    if batched:
        config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
        config.dynamic_batching.default_queue_policy.max_queue_size = options.max_queue_size
    config.instance_group.add(count=options.instances, kind=KINDS[options.kind])
    for key, value in _facts(graph, manifest).items():
        config.parameters[key].string_value = value
    return config


def write_repository(export_dir: str | Path, out: str | Path, options: RepoOptions = RepoOptions()) -> Path:
    """Write the repository to `out` (which must not exist), all or nothing; return `out`."""
    from google.protobuf import text_format

    _check_options(options)
    manifest = load_manifest(export_dir)
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise OutputError(f"{out} already exists; choose a new directory for the model repository")
    if not out.parent.is_dir():
        raise OutputError(f"directory {out.parent} does not exist; create it first")
    check_files(manifest, keep=set())  # sizes, hashes, metadata, one checkpoint: as Sampler.load checks them
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for graph in REPO_GRAPHS:
            if not manifest.has(graph):
                raise SpriteGenError(f"export {manifest.directory} has no {GRAPHS[graph].file}; re-export "
                                     "with spritegen-export")
            folder = staging / model_name(graph)
            (folder / VERSION).mkdir(parents=True)
            (folder / VERSION / MODEL_FILE).write_bytes(manifest.read_file(GRAPHS[graph].file))
            config = model_config(graph, manifest, options)
            (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
        staging.chmod(0o755)
        staging.rename(out)
    except OSError as exc:
        raise OutputError(f"cannot write the model repository {out}: {exc.strerror or exc}; nothing was "
                          "written") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _sizes(manifest: Manifest) -> dict[str, int]:
    """Contract shape symbol -> Triton dim (-1: variable)."""
    m = manifest.model
    return {"B": -1, "GB": -1, "C": m.in_channels, "H": m.height, "W": m.height, "K": m.n_cfeat}


def _dims(tensor: TensorSpec, sizes: dict[str, int]) -> list[int]:
    return [int(s) if s.isdigit() else sizes[s] for s in tensor.shape]


def _facts(graph: str, manifest: Manifest) -> dict[str, str]:
    """What a client needs beside the tensors: class order, schedule, the loop's step count."""
    facts = {"spritegen.class_names": json.dumps(list(manifest.class_names)),
             "spritegen.schedule": json.dumps(manifest.schedule.config.to_dict()),
             "spritegen.graph": GRAPHS[graph].doc}
    if graph == "ddim_loop" and manifest.ddim_loop_steps is not None:
        facts["spritegen.ddim_loop_steps"] = str(manifest.ddim_loop_steps)
    return facts


def _check_options(options: RepoOptions) -> None:
    ServeOptions(max_batch_size=options.max_batch_size, queue_delay_us=options.queue_delay_us,
                 max_queue_size=options.max_queue_size, instances=options.instances)  # same bounds, same lines
    if options.kind not in KINDS:
        raise SpriteGenError(f"unknown instance kind {options.kind!r}; choose one of {', '.join(KINDS)}")
