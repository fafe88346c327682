"""No exported graph lets a shape-derived value reach GPU math (spritegen.export.shape_flow).

Why it matters: ONNX Runtime's CUDA provider computes shape arithmetic on the CPU; a
shape value that then feeds a float op needs a host-device copy node, and with copy
nodes ORT refuses CUDA graph capture (the step and loop graphs silently lost it that
way). The check is structural, so it runs here without a GPU. The negative cases prove
it can fail: the earlier guidance weight `w * (G - 1)` traced by torch's exporter, the
same pattern built by hand, and selecting the weight with a Gather instead of a Slice.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import numpy as np

from spritegen.contract import FP16_UNET_FILE, GRAPHS, INT8_UNET_FILE
from spritegen.export.graphs import GuidedEps
from spritegen.export.shape_flow import shape_leaks

EXPORTED = [spec.file for spec in GRAPHS.values()] + [FP16_UNET_FILE, INT8_UNET_FILE]


@pytest.mark.parametrize("file", EXPORTED)
def test_exported_graph_keeps_shape_values_on_shape_ops(export_dir: Path, file: str) -> None:
    model = onnx.load(str(export_dir / file))
    assert any(node.op_type == "Shape" for node in model.graph.node), "nothing to check: no Shape op in the graph"
    assert shape_leaks(model) == []


class _TinyUnet(nn.Module):
    """Stands in for ContextUnet: eps from x, t and c, shape (GB, C, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + t.view(-1, 1, 1, 1) + c.sum(dim=1).view(-1, 1, 1, 1)


class _ProductWeight(GuidedEps):
    """GuidedEps as it was: the weight computed as w * (G - 1), from shapes."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        groups = c.shape[0] // batch
        eps_all = self.unet(x.repeat(groups, 1, 1, 1), t, c)
        weight = w * (groups - 1)
        return (1 + weight) * eps_all[:batch] - weight * eps_all[(groups - 1) * batch:groups * batch]


def _traced(module: nn.Module) -> onnx.ModelProto:
    """`module` through the exporter the project uses (legacy tracer, dynamic batch axes)."""
    inputs = (torch.rand(2, 3, 4, 4), torch.rand(1), torch.rand(4, 5), torch.rand(1))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), inputs, buffer, dynamo=False, opset_version=20,
                          input_names=["x", "t", "c", "w"], output_names=["eps"],
                          dynamic_axes={"x": {0: "B"}, "c": {0: "GB"}, "eps": {0: "B"}})
    return onnx.load_from_string(buffer.getvalue())


def test_traced_guidance_weight_passes_now_and_failed_before() -> None:
    """The selected weight passes where the product failed, and gives the same bits in ORT."""
    torch.manual_seed(0)
    unet = _TinyUnet()
    selected, product = _traced(GuidedEps(unet)), _traced(_ProductWeight(unet))
    assert shape_leaks(selected) == []
    leaks = shape_leaks(product)
    assert len(leaks) == 1 and leaks[0].startswith("Mul node"), leaks
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (selected, product)]
    rng = np.random.default_rng(0)
    for groups, w in ((1, 0.0), (1, 3.0), (2, 0.0), (2, 3.0)):
        feeds = {"x": rng.standard_normal((3, 3, 4, 4), dtype=np.float32), "t": np.array([0.5], np.float32),
                 "c": rng.random((3 * groups, 5), dtype=np.float32), "w": np.array([w], np.float32)}
        new, old = (s.run(None, feeds)[0] for s in sessions)
        assert new.tobytes() == old.tobytes(), (groups, w)


def _model(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray], outputs: list[str]) -> onnx.ModelProto:
    """x (B, 4) and w (1,) float inputs; `outputs` float (any shape)."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])]
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs]
    inits = [numpy_helper.from_array(value, name) for name, value in constants.items()]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outs, initializer=inits))


_BATCH = [helper.make_node("Shape", ["x"], ["shape"]),
          helper.make_node("Gather", ["shape", "zero_i"], ["b"], axis=0),  # B, int64 scalar
          helper.make_node("Unsqueeze", ["b", "axes0"], ["b1"])]  # (1,)
_CONSTANTS = {"zero_i": np.array(0, np.int64), "axes0": np.array([0], np.int64), "one_i": np.array([1], np.int64),
              "zero_f": np.array([0], np.float32), "four": np.array([4], np.int64)}


@pytest.mark.fast
def test_hand_built_product_of_shape_and_weight_is_a_leak() -> None:
    nodes = _BATCH + [helper.make_node("Sub", ["b1", "one_i"], ["g1"]),
                      helper.make_node("Cast", ["g1"], ["g1f"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", ["w", "g1f"], ["weight"], name="weight_from_shape"),
                      helper.make_node("Mul", ["x", "weight"], ["y"])]
    leaks = shape_leaks(_model(nodes, _CONSTANTS, ["y"]))
    assert leaks == ["Mul node 'weight_from_shape' reads shape-derived 'g1f' at input 1"]


def test_gather_indexed_by_a_shape_is_a_leak_slice_is_not() -> None:
    """Gather takes its indices in GPU memory on CUDA (a copy); Slice reads them from the host."""
    pair = [helper.make_node("Concat", ["zero_f", "w"], ["pair"], axis=0),
            helper.make_node("Sub", ["b1", "one_i"], ["g1"])]
    gather = _model(_BATCH + pair + [helper.make_node("Gather", ["pair", "g1"], ["sel"], axis=0, name="select"),
                                     helper.make_node("Mul", ["x", "sel"], ["y"])], _CONSTANTS, ["y"])
    assert shape_leaks(gather) == ["Gather node 'select' reads shape-derived 'g1' at input 1"]
    sliced = _model(_BATCH + pair + [helper.make_node("Slice", ["pair", "g1", "b1"], ["sel"]),
                                     helper.make_node("Mul", ["x", "sel"], ["y"])], _CONSTANTS, ["y"])
    assert shape_leaks(sliced) == []


def test_shape_values_may_end_in_host_inputs_but_not_in_outputs() -> None:
    reshape = [helper.make_node("Concat", ["b1", "four"], ["target"], axis=0),
               helper.make_node("Reshape", ["x", "target"], ["y"]),
               helper.make_node("ConstantOfShape", ["target"], ["ones"]),
               helper.make_node("Expand", ["x", "ones"], ["z"])]
    assert shape_leaks(_model(_BATCH + reshape, _CONSTANTS, ["y", "z"])) == []
    out = _model(_BATCH + [helper.make_node("Cast", ["b1"], ["bf"], to=TensorProto.FLOAT)], _CONSTANTS, ["bf"])
    assert shape_leaks(out) == ["graph output 'bf' is shape-derived"]
