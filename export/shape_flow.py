"""Where values computed from tensor shapes go: the rule that keeps a graph copy-free on CUDA.

ONNX Runtime's CUDA provider returns `Shape` (and `Size`) in host memory, and its
placement pass moves the small integer arithmetic that follows (Gather, Div, Concat,
...) onto the CPU so those values never travel. That is free as long as a shape value
only ever ends where a CUDA kernel *reads it from host memory*: Reshape's target shape,
Slice's starts and ends, Tile's repeats, and so on. Anywhere else (a float Mul with a
graph input, a Gather that indexes GPU data with it, a graph output) the value is a CPU
tensor feeding GPU work, so ORT inserts a host-device copy node; and with copy nodes in
a graph ORT refuses CUDA graph capture. This module finds such leaks in an ONNX file,
without a GPU: `shape_leaks(model)` lists them, empty when the graph is clean.

The rule, stated as data:
- SOURCES: ops whose output is a shape value.
- SHAPE_OPS: integer arithmetic on shapes; a node of these propagates (its outputs
  become shape values) when every input is a shape value or a constant (an
  initializer or a Constant node), as ORT's placement then runs it on the CPU.
  Mixing in anything else (a graph input, a GPU tensor) is a leak: that is the
  `w * (G - 1)` pattern this module was written to catch.
- HOST_INPUTS: (op, input index) pairs that CUDA kernels declare in host memory
  (OrtMemTypeCPUInput), so a shape value may end there.
It is deliberately stricter than ORT in one way: ORT would also run a shape op mixed
with a graph input on the CPU, but its float result then crosses into GPU math, so the
leak is reported where the mixing happens, which names the line of model code to fix.
"""

from __future__ import annotations

import onnx

SOURCES = frozenset({"Shape", "Size"})
SHAPE_OPS = frozenset({
    "Gather", "Concat", "Unsqueeze", "Squeeze", "Cast", "Slice", "Reshape", "Identity",
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Max", "Min", "ReduceProd", "ReduceSum",
    "Equal", "Less", "Greater", "Where", "Range", "ConstantOfShape",
})
# Inputs the CUDA kernels read from host memory: a shape value may end here with no copy.
HOST_INPUTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}), "Expand": frozenset({1}), "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}), "Unsqueeze": frozenset({1}), "Squeeze": frozenset({1}),
    "ConstantOfShape": frozenset({0}), "Range": frozenset({0, 1, 2}), "Pad": frozenset({1, 2, 3}),
    "Resize": frozenset({1, 2, 3}), "Upsample": frozenset({1}), "TopK": frozenset({1}),
    "Split": frozenset({1}), "ReduceSum": frozenset({1}), "ReduceMean": frozenset({1}),
    "ReduceMax": frozenset({1}), "ReduceMin": frozenset({1}), "ReduceProd": frozenset({1}),
}


def _constants(graph: onnx.GraphProto) -> set[str]:
    """Names of values fixed at export: initializers and Constant nodes' outputs."""
    names = {init.name for init in graph.initializer}
    names.update(out for node in graph.node if node.op_type == "Constant" for out in node.output)
    return names


def _describe(node: onnx.NodeProto, index: int, value: str) -> str:
    return f"{node.op_type} node {node.name or '(unnamed)'!r} reads shape-derived {value!r} at input {index}"


def shape_leaks(model: onnx.ModelProto) -> list[str]:
    """Every place a shape-derived value reaches a non-shape use (module doc); [] if none.

    Nodes are visited in the file's order, which ONNX requires to be topological.
    """
    graph = model.graph
    constants, shaped = _constants(graph), set()
    leaks: list[str] = []
    for node in graph.node:
        if node.op_type in SOURCES:
            shaped.update(node.output)
            continue
        hits = [(k, name) for k, name in enumerate(node.input) if name in shaped]
        if not hits:
            continue
        host = HOST_INPUTS.get(node.op_type, frozenset())
        if all(k in host for k, _ in hits) and node.op_type != "ConstantOfShape":
            continue  # the shape values end where the kernel reads host memory
        others = [name for k, name in enumerate(node.input) if name and name not in shaped and k not in host]
        if node.op_type in SHAPE_OPS and all(name in constants for name in others):
            shaped.update(node.output)  # pure shape arithmetic: runs on the CPU, stays a shape value
            continue
        leaks += [_describe(node, k, name) for k, name in hits if k not in host]
    outputs = [v.name for v in graph.output if v.name in shaped]
    leaks += [f"graph output {name!r} is shape-derived" for name in outputs]
    return leaks
