"""`spritegen triton-repo`: every config.pbtxt parsed with Triton's own ModelConfig protobuf
and checked against the ONNX graph it serves (read with onnx, not onnxruntime).

The ONNX Runtime backend itself cannot be installed here (PyTriton bundles only the Python
backend), so these tests check what Triton would check when loading: names, dtypes, dims
and the batching declaration against the graph.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb
from typer.testing import CliRunner

from spritegen.cli import app
from spritegen.contract import GRAPHS
from spritegen.serving.repository import MODEL_FILE, REPO_GRAPHS, VERSION, model_name

ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: pb.TYPE_FP32, onnx.TensorProto.INT64: pb.TYPE_INT64,
                  onnx.TensorProto.FLOAT16: pb.TYPE_FP16}


@pytest.fixture(scope="module")
def repository(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "models"
    result = CliRunner().invoke(app, ["triton-repo", str(export_dir), str(out), "--max-batch-size", "16",
                                      "--instances", "2"])
    assert result.exit_code == 0, result.output
    return out


def _config(repository: Path, graph: str) -> pb.ModelConfig:
    return text_format.Parse((repository / model_name(graph) / "config.pbtxt").read_text(), pb.ModelConfig())


def _graph_io(path: Path) -> dict[str, tuple[int, list]]:
    """name -> (onnx elem type, dims: int or symbol) for every graph input and output."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: (v.type.tensor_type.elem_type,
                     [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim])
            for v in (*graph.input, *graph.output)}


@pytest.mark.parametrize("graph", REPO_GRAPHS)
def test_config_matches_the_onnx_graph(repository: Path, export_dir: Path, graph: str) -> None:
    config = _config(repository, graph)
    model = repository / model_name(graph) / VERSION / MODEL_FILE
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert hashlib.sha256(model.read_bytes()).hexdigest() == manifest["files"][GRAPHS[graph].file]["sha256"]
    assert (config.name, config.platform, config.backend) == (model_name(graph), "onnxruntime_onnx", "onnxruntime")
    io = _graph_io(model)
    declared = [*config.input, *config.output]
    assert sorted(t.name for t in declared) == sorted(io)  # every graph tensor, nothing else
    assert [t.name for t in config.input] == [s.name for s in GRAPHS[graph].inputs]
    for tensor in declared:
        elem, dims = io[tensor.name]
        assert tensor.data_type == ONNX_TO_TRITON[elem], tensor.name
        full = ([-1] if config.max_batch_size > 0 else []) + list(tensor.dims)
        if tensor.HasField("reshape"):  # a (B,) tensor: [1] per request, a scalar to the graph
            full = [-1] + list(tensor.reshape.shape)
        assert len(full) == len(dims), (tensor.name, full, dims)
        for ours, theirs in zip(full, dims):
            # a fixed graph dim must be declared exactly; a symbolic one is -1 or the contract's size
            assert ours == theirs if isinstance(theirs, int) and theirs > 0 else ours == -1 or ours > 0, \
                (tensor.name, full, dims)
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, pb.ModelInstanceGroup.KIND_GPU)]


@pytest.mark.fast
def test_batching_declarations(repository: Path) -> None:
    """unet is batched by Triton (all tensors batch-first); ddim_loop cannot be (GB rows of c,
    one w per call), so it is max_batch_size 0 with explicit variable dims."""
    unet, loop = _config(repository, "unet"), _config(repository, "ddim_loop")
    assert unet.max_batch_size == 16 and unet.HasField("dynamic_batching")
    assert unet.dynamic_batching.default_queue_policy.max_queue_size > 0
    assert loop.max_batch_size == 0 and not loop.HasField("dynamic_batching")
    dims = {t.name: list(t.dims) for t in loop.input}
    assert dims["c"][0] == -1 and dims["w"] == [1] and dims["x"][0] == -1
    assert json.loads(loop.parameters["spritegen.class_names"].string_value)
    assert int(loop.parameters["spritegen.ddim_loop_steps"].string_value) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-batch-size", "0"], "--max-batch-size must be an integer in 1..1024"),
        (["--kind", "tpu"], "unknown instance kind 'tpu'"),
        (["--instances", "0"], "--instances must be an integer"),
    ],
)
def test_bad_options_are_one_line(export_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["triton-repo", str(export_dir), str(tmp_path / "out"), *args])
    assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()


def test_existing_output_and_missing_export_are_refused(export_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    taken = CliRunner().invoke(app, ["triton-repo", str(export_dir), str(tmp_path / "taken")])
    assert taken.exit_code == 1 and "already exists" in taken.output
    missing = CliRunner().invoke(app, ["triton-repo", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert missing.exit_code == 1 and "does not exist" in missing.output and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging left behind
