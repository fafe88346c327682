"""Does ONNX Runtime really run a convolution on the GPU? One JSON record that says so, or why not.

Listing `CUDAExecutionProvider` proves nothing: onnxruntime-gpu lists it whether or
not CUDA, cuBLAS and cuDNN load, and loads cuDNN only at the first convolution. So the
probe builds a one-Conv model, opens it with the CPU fallback *disabled*
(`session.disable_cpu_ep_fallback`: session creation fails if any node is not on the
requested provider), runs it with the output bound to device memory, and compares the
result with numpy's convolution. `--device cpu` runs the same probe on the CPU provider
(how it is tested without a GPU).

    python -m benchmarks.gpu_probe --device cuda --out probe.json   # exit 0 only if it ran and matched
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # fp32 conv of 27-term sums of O(1) values; TF32 is off (use_tf32=0)
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def conv_model() -> tuple[bytes, np.ndarray, np.ndarray]:
    """A (1, 3, 8, 8) -> (1, 4, 8, 8) 3x3 convolution with padding 1; (model bytes, weight, bias)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), weight, bias


def numpy_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The reference: a direct 3x3 convolution, padding 1, in float64."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, weight.shape[0], x.shape[2], x.shape[3]))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]  # (1, C, H, W)
            out += np.einsum("bchw,oc->bohw", window, weight[:, :, dy, dx])
    return out + bias.reshape(1, -1, 1, 1)


def probe(device: str) -> dict:
    """Run the probe on `device`; the record says ok, what ran where, and the measured error."""
    import onnxruntime as ort

    record: dict = {"device": device, "onnxruntime": ort.__version__, "onnxruntime_file": ort.__file__,
                    "available_providers": ort.get_available_providers(), "ok": False}
    provider = PROVIDERS[device]
    try:
        if device == "cuda" and hasattr(ort, "preload_dlls"):
            ort.preload_dlls(cuda=True, cudnn=True)
        model, weight, bias = conv_model()
        options = ort.SessionOptions()
        if device == "cuda":  # (the CPU provider cannot be asked for with its own fallback disabled)
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        provider_options = [{"use_tf32": "0"}] if device == "cuda" else [{}]
        session = ort.InferenceSession(model, options, providers=[provider], provider_options=provider_options)
        record["session_providers"] = session.get_providers()
        x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
        binding = session.io_binding()
        binding.bind_cpu_input("x", x)
        binding.bind_output("y", "cuda" if device == "cuda" else "cpu")
        session.run_with_iobinding(binding)
        y = binding.copy_outputs_to_cpu()[0]
        record["max_abs_error"] = float(np.abs(y - numpy_conv(x, weight, bias)).max())
        record["ok"] = record["session_providers"][0] == provider and record["max_abs_error"] <= TOLERANCE
    except Exception as exc:  # ORT's own exception types; the record carries the reason
        record["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=tuple(PROVIDERS), default="cuda")
    parser.add_argument("--out", type=Path, help="write the JSON record here too")
    args = parser.parse_args(argv)
    record = probe(args.device)
    text = json.dumps(record, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    if not record["ok"]:
        print(f"gpu_probe: {args.device} convolution did not run correctly: "
              f"{record.get('error') or record.get('max_abs_error')}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
