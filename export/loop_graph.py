"""Build ddim_loop.onnx from one exported deterministic DDIM step (graphs.DdimBody).

Two constructions of the same sampler, both sharing ONE set of initializers (the
network's weights and the schedule tables appear once whatever the step count):

- `unroll`: the body's nodes copied once per step with renamed intermediate values,
  step indices as int64 initializers. No control flow, so ONNX Runtime can capture
  it in a CUDA graph and optimise across steps; this is what the exporter writes
  (docs/export.md has the measurements behind that choice).
- `as_loop`: one ONNX Loop node whose body is the step and whose trip count is the
  step count; (i, i_prev) are gathered from a table by the iteration number. Kept
  for the comparison (`spritegen-export`'s docs and tests measure both).

Body contract (from the exporter): inputs x, c, i, i_prev, w; output x_prev.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

import numpy as np

BODY_INPUTS = ("x", "c", "i", "i_prev", "w")
LOOP_OUTPUT = "sample"


def _check_body(body: onnx.ModelProto) -> None:
    names = tuple(v.name for v in body.graph.input)
    if names != BODY_INPUTS or [v.name for v in body.graph.output] != ["x_prev"]:
        raise ValueError(f"DDIM body has inputs {names}, expected {BODY_INPUTS} -> x_prev")


def _renamed_nodes(graph: onnx.GraphProto, prefix: str, mapping: dict[str, str]) -> list[onnx.NodeProto]:
    """Copies of graph's nodes; values not in `mapping` get `prefix`, initializers keep their names."""
    shared = {init.name for init in graph.initializer}

    def rename(name: str) -> str:
        if not name or name in shared:
            return name
        return mapping.get(name, prefix + name)

    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.op_type)
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]
        nodes.append(copy)
    return nodes


def _io(body: onnx.ModelProto) -> tuple[list[onnx.ValueInfoProto], onnx.ValueInfoProto]:
    """Graph inputs x, c, w and the sample output, typed as the body's x and x_prev."""
    by_name = {v.name: v for v in body.graph.input}
    inputs = [by_name["x"], by_name["c"], by_name["w"]]
    out = onnx.ValueInfoProto()
    out.CopyFrom(body.graph.output[0])
    out.name = LOOP_OUTPUT
    return inputs, out


def _clip(source: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Clip", [source, "loop_clip_min", "loop_clip_max"], [LOOP_OUTPUT], name="final_clip")]


def _clip_bounds() -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(-1, np.float32), "loop_clip_min"),
            numpy_helper.from_array(np.array(1, np.float32), "loop_clip_max")]


def _model(body: onnx.ModelProto, graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=list(body.opset_import), producer_name=body.producer_name,
                              producer_version=body.producer_version)
    model.ir_version = body.ir_version
    return model


def unroll(body: onnx.ModelProto, pairs: list[tuple[int, int]]) -> onnx.ModelProto:
    """The sampler as len(pairs) copies of the body in sequence, then Clip(-1, 1)."""
    _check_body(body)
    nodes: list[onnx.NodeProto] = []
    initializers = list(body.graph.initializer) + _clip_bounds()
    state = "x"
    for k, (i, i_prev) in enumerate(pairs):
        index_names = (f"loop_i_{k}", f"loop_i_prev_{k}")
        initializers += [numpy_helper.from_array(np.array([i], np.int64), index_names[0]),
                         numpy_helper.from_array(np.array([i_prev], np.int64), index_names[1])]
        out = f"step{k}/x_prev"
        mapping = {"x": state, "c": "c", "w": "w", "i": index_names[0], "i_prev": index_names[1], "x_prev": out}
        nodes += _renamed_nodes(body.graph, f"step{k}/", mapping)
        state = out
    nodes += _clip(state)
    inputs, output = _io(body)
    graph = helper.make_graph(nodes, "ddim_loop_unrolled", inputs, [output], initializer=initializers)
    return _model(body, graph)


def as_loop(body: onnx.ModelProto, pairs: list[tuple[int, int]]) -> onnx.ModelProto:
    """The sampler as one ONNX Loop node over the body, then Clip(-1, 1)."""
    _check_body(body)
    step_nodes = [
        helper.make_node("Reshape", ["iter", "loop_shape_1"], ["iter_1"], name="iter_as_1d"),
        helper.make_node("Gather", ["loop_i_table", "iter_1"], ["body_i"], name="gather_i", axis=0),
        helper.make_node("Gather", ["loop_i_prev_table", "iter_1"], ["body_i_prev"], name="gather_i_prev", axis=0),
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
    ]
    mapping = {"x": "x_in", "c": "c", "w": "w", "i": "body_i", "i_prev": "body_i_prev", "x_prev": "x_out"}
    step_nodes += _renamed_nodes(body.graph, "body/", mapping)
    x_type = body.graph.input[0].type.tensor_type
    x_shape = [d.dim_param or d.dim_value for d in x_type.shape.dim]
    loop_body = helper.make_graph(
        step_nodes, "ddim_body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, x_shape)],
    )
    initializers = list(body.graph.initializer) + _clip_bounds() + [
        numpy_helper.from_array(np.array([i for i, _ in pairs], np.int64), "loop_i_table"),
        numpy_helper.from_array(np.array([p for _, p in pairs], np.int64), "loop_i_prev_table"),
        numpy_helper.from_array(np.array([1], np.int64), "loop_shape_1"),
        numpy_helper.from_array(np.array(len(pairs), np.int64), "loop_trip_count"),
        numpy_helper.from_array(np.array(True), "loop_cond"),
    ]
    loop = helper.make_node("Loop", ["loop_trip_count", "loop_cond", "x"], ["loop_x"], name="ddim_loop", body=loop_body)
    inputs, output = _io(body)
    graph = helper.make_graph([loop] + _clip("loop_x"), "ddim_loop_onnx_loop", inputs, [output],
                              initializer=initializers)
    return _model(body, graph)
