"""Write torch modules as ONNX files whose names, dtypes and dynamic axes come from the contract.

One pinned exporter: the legacy TorchScript-based one (`torch.onnx.export(...,
dynamo=False)`), with constant folding and eval-mode export, so BatchNorm is folded
into the convolutions before the file is written. Opset 20 is the default: the
network's GELU is then one `Gelu` node in the file (below 20 it is an Erf pattern
that ONNX Runtime fuses back), and ORT's optimised CPU graph is the same for every
opset in 14..20, so nothing is lost on speed (docs/export.md has the numbers).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from spritegen.contract import GRAPHS, GraphSpec, ModelConfig
from spritegen.errors import ExportError
from spritegen.files import write_bytes_atomic

OPSETS = range(14, 21)  # what the legacy exporter writes and ORT >= 1.18 runs
DEFAULT_OPSET = 20
TRACE_BATCH = 2  # example batch for tracing; every B/GB axis is exported dynamic

_BY_NAME = {s.name: s for s in GRAPHS["ddim_step"].inputs}
DDIM_BODY = GraphSpec(
    "ddim_body.onnx",  # never written: the step repeated by ddim_loop.onnx (loop_graph)
    inputs=tuple(_BY_NAME[n] for n in ("x", "c", "i", "i_prev", "w")),
    outputs=GRAPHS["ddim_step"].outputs,
    doc="one deterministic DDIM step (eta = 0)",
)


def check_opset(opset: int) -> int:
    """The opset, or an ExportError naming the supported range."""
    if opset not in OPSETS:
        raise ExportError(f"unknown opset {opset}: the exporter supports opsets {OPSETS.start}..{OPSETS.stop - 1} "
                          f"(default {DEFAULT_OPSET})")
    return opset


def dims(config: ModelConfig) -> dict[str, int]:
    """Concrete sizes of the contract's shape symbols (all but the batch)."""
    return {"C": config.in_channels, "H": config.height, "W": config.height, "K": config.n_cfeat, "1": 1}


def example_inputs(spec: GraphSpec, config: ModelConfig, batch: int = TRACE_BATCH,
                   groups: int = 1) -> tuple[torch.Tensor, ...]:
    """Tracing inputs in the spec's order; index inputs get valid step indices."""
    sizes = {**dims(config), "B": batch, "GB": groups * batch}
    values = []
    for s in spec.inputs:
        shape = [sizes[d] for d in s.shape]
        if s.dtype == "int64":
            values.append(torch.full(shape, 2 if s.name == "i" else 1, dtype=torch.int64))
        else:
            values.append(torch.rand(shape))
    return tuple(values)


def dynamic_axes(spec: GraphSpec) -> dict[str, dict[int, str]]:
    """Every B / GB axis of every input and output, by name."""
    axes: dict[str, dict[int, str]] = {}
    for s in spec.inputs + spec.outputs:
        named = {k: d for k, d in enumerate(s.shape) if d in ("B", "GB")}
        if named:
            axes[s.name] = named
    return axes


def to_onnx(module: nn.Module, spec: GraphSpec, config: ModelConfig, opset: int,
            groups: int = 1) -> onnx.ModelProto:
    """Trace `module` with the legacy exporter into an in-memory ModelProto."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer hints
        torch.onnx.export(
            module.eval(), example_inputs(spec, config, groups=groups), buffer, dynamo=False,
            opset_version=opset, do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
            input_names=[s.name for s in spec.inputs], output_names=[s.name for s in spec.outputs],
            dynamic_axes=dynamic_axes(spec),
        )
    proto = onnx.load_from_string(buffer.getvalue())
    name_dims(proto, spec, config)
    return proto


def name_dims(model: onnx.ModelProto, spec: GraphSpec, config: ModelConfig) -> None:
    """Give every input and output dim the contract's size: C/H/W/K as numbers, B/GB by name.

    The legacy exporter leaves output dims it could not infer through the dynamic batch as
    made-up names (`Addx_prev_dim_2` for H); readers of the file should see 16 there.
    """
    sizes = dims(config)
    specs = {s.name: s for s in spec.inputs + spec.outputs}
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in specs:
            continue
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for symbol in specs[value.name].shape:
            dim = shape.dim.add()
            if symbol in sizes:
                dim.dim_value = sizes[symbol]
            else:
                dim.dim_param = symbol


def set_metadata(model: onnx.ModelProto, props: dict[str, Any], doc: str) -> None:
    """Key facts (keyed by contract.GraphMeta) as metadata_props, JSON for non-strings, and the doc string."""
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    model.doc_string = doc
    model.producer_name = "spritegen"


def save(model: onnx.ModelProto, path: Path) -> None:
    """One self-contained file (the network is ~6 MB, far below protobuf's 2 GB limit), written
    all-or-nothing; a full disk is one OutputError line."""
    write_bytes_atomic(path, model.SerializeToString())
