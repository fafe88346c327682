"""unet_fp16.onnx: fp16 weights and compute, fp32 inputs and outputs, norms kept in fp32.

Converted from the fp32 graph by ONNX Runtime's own float16 converter
(onnxruntime.transformers.float16, shipped in the onnxruntime wheel) with
`keep_io_types`, so callers feed and read float32 exactly as for unet.onnx.
GroupNorm is exported as Reshape + InstanceNormalization; its variance is a mean of
squares over 2 x 16 x 16 values per group, which can exceed fp16's 65504 range for
activations above ~256, so InstanceNormalization stays in fp32 (the converter puts
Casts around it), and `check_norms_fp32` proves that on the written graph.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from spritegen.errors import ExportError

# Normalisation ops whose statistics must not be computed in fp16 (module doc).
FP32_OPS = ("InstanceNormalization", "GroupNormalization", "LayerNormalization", "BatchNormalization")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of `model` with fp32 IO and FP32_OPS left in fp32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP32_OPS),
        disable_shape_infer=False,
    )
    _sort_topologically(converted.graph)
    check_norms_fp32(converted)
    return converted


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after its producers (the converter appends its Casts last)."""
    ready = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ExportError("fp16 conversion produced a graph with a cycle or a dangling input")
        for node in runnable:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if all(n is not r for r in runnable)]
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def check_norms_fp32(model: onnx.ModelProto) -> None:
    """Raise ExportError unless every normalisation node reads and writes float32."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    for node in inferred.graph.node:
        if node.op_type not in FP32_OPS:
            continue
        for name in list(node.input) + list(node.output):
            if name and types.get(name, TensorProto.FLOAT) != TensorProto.FLOAT:
                raise ExportError(f"fp16 export left {node.op_type} node {node.name!r} on a non-float32 tensor "
                                  f"{name!r}; normalisation must stay in fp32 to avoid fp16 overflow")
