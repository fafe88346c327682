"""The hardware limit: FLOPs of one network call and the fp32 matrix-multiply peak.

FLOPs are counted by torch's FlopCounterMode on the eager model (convolutions and
linear layers; element-wise work is not counted, as rooflines usually do). The peak is
measured in the same run: the best n x n x n fp32 matmul rate that any of the libraries
at hand reaches (torch, numpy, ONNX Runtime's MLAS), because one library's GEMM can
miss this CPU's best code path (torch's MKL on an AMD CPU, for instance) and the
limit is the hardware's, not a library's. Every library's figure is recorded.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def _best_rate(fn: Callable[[], object], flops: float, reps: int, sync: Callable[[], None] = lambda: None) -> float:
    """GFLOP/s of the fastest of `reps` calls after two warm-ups (peak = best, not typical)."""
    fn(), fn()
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def cpu_matmul_peaks(n: int, reps: int) -> dict[str, float]:
    """fp32 GFLOP/s of an n x n x n matmul in each library that imports here."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    rates = {"numpy": _best_rate(lambda: a @ b, flops, reps)}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = _best_rate(lambda: ta @ tb, flops, reps)
    except ImportError:
        pass
    rates["onnxruntime"] = _best_rate(_ort_matmul(n, a, b), flops, reps)
    return rates


def _ort_matmul(n: int, a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def spec(name: str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n])

    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul",
                              [spec("A"), spec("B")], [spec("C")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"A": a, "B": b})


def cuda_matmul_peaks(n: int, reps: int) -> dict[str, float]:
    """GPU GFLOP/s: fp32 without TF32 (the roofline's peak), and TF32 and bf16 for reference."""
    import torch

    flops, sync = 2.0 * n**3, torch.cuda.synchronize
    rates = {}
    for name, dtype, tf32 in (("torch_cuda_fp32", torch.float32, False), ("torch_cuda_tf32", torch.float32, True),
                              ("torch_cuda_bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        rates[name] = _best_rate(lambda: a @ b, flops, reps, sync)
    torch.backends.cuda.matmul.allow_tf32 = False
    return rates


def flops_per_image(config: dict) -> float:
    """FLOPs of one network call per image (batch 4, divided by 4), by torch's counter.
    The count depends on the architecture only, so a freshly initialised model will do."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from spritegen.contract import ModelConfig
    from spritegen.export.model import ContextUnet

    cfg, batch = ModelConfig.from_dict(config), 4
    model = ContextUnet.from_config(cfg).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(batch, cfg.in_channels, cfg.height, cfg.height), torch.zeros(batch),
              torch.zeros(batch, cfg.n_cfeat))
    return counter.get_total_flops() / batch


def roofline_ms(flops: float, peak_gflops: float) -> float:
    """The fastest time the hardware allows for `flops` at `peak_gflops`."""
    return flops / (peak_gflops * 1e9) * 1e3
