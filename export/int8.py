"""unet_int8.onnx: the noise predictor quantized to int8 (QDQ), fp32 inputs and outputs.

Why: ONNX Runtime's CPU provider has no bf16 kernels, but it runs int8 QDQ convolutions
on the CPU's VNNI (and AMX) int8 units. Measured on the project's 2-core AVX-512 CPU:
one call at batch 1 0.55 ms vs 0.76 ms fp32, at batch 30 10.2 ms vs 20.3 ms.

How: static quantization with ONNX Runtime's own tool (onnxruntime.quantization, in
the onnxruntime wheel): int8 weights per output channel, uint8 activations whose ranges
are calibrated (min/max) on the network inputs that real sampling visits: every step of
deterministic DDIM-50 trajectories of the eager model, for two rows of every class and
two unconditional rows, from fixed noise, so the same checkpoint always gives the same file.

What it costs: int8 changes every call's eps a little (the exporter checks it per call
against eager with `Tolerances.int8_eps`), and a sampler's many steps turn small
changes into a different sprite of the same class: from the same noise, int8 and fp32
sprites differ pixel by pixel. So int8 is opt-in (`--int8`, `Sampler.load(precision=
"int8")`) and its quality is measured as sprites' class accuracy in benchmarks/.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from spritegen.contract import GRAPHS, ModelConfig, ScheduleConfig
from spritegen.errors import ExportError
from spritegen.export.reference import sample_ddim

# Only the matrix products go int8: they hold the FLOPs. Quantizing the elementwise ops too
# measured slower (0.58 vs 0.55 ms per call at batch 1) and less exact (7.0% vs 5.6% rel RMS).
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIBRATION_STEPS = 50  # DDIM steps of each calibration trajectory: t every T/50, a superset of DDIM-25's
CALIBRATION_ROWS_PER_CLASS = 2
CALIBRATION_SEED = 123
HELD_OUT_SEED = 321  # the trajectories validation checks int8 on: not the ones it was calibrated on


class _Recorder(nn.Module):
    """The model, recording each call's inputs as a unet.onnx feed and its output eps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.feeds: list[dict[str, np.ndarray]] = []
        self.outputs: list[np.ndarray] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        rows = x.shape[0]
        context = c if c is not None else torch.zeros(rows, self.model.n_cfeat)
        self.feeds.append({"x": x.numpy().copy(), "t": t.reshape(-1).expand(rows).numpy().astype(np.float32),
                           "c": context.numpy().astype(np.float32)})
        eps = self.model(x, t, c=c)
        self.outputs.append(eps.numpy().copy())
        return eps


def calibration_feeds(model: nn.Module, config: ModelConfig, schedule: ScheduleConfig,
                      seed: int = CALIBRATION_SEED) -> list[dict[str, np.ndarray]]:
    """unet.onnx feeds along eager DDIM trajectories from `seed`'s noise (module doc), one per step."""
    return sampling_calls(model, config, schedule, seed)[0]


def sampling_calls(model: nn.Module, config: ModelConfig, schedule: ScheduleConfig,
                   seed: int) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """(feeds, eager eps) of every network call along eager DDIM trajectories from `seed`'s
    noise (module doc): the eps come with the feeds, so no caller runs the model twice."""
    rows = [k for k in range(config.n_cfeat) for _ in range(CALIBRATION_ROWS_PER_CLASS)]
    context = torch.zeros(len(rows) + CALIBRATION_ROWS_PER_CLASS, config.n_cfeat)  # + unconditional rows
    context[torch.arange(len(rows)), torch.tensor(rows)] = 1
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(context), config.in_channels, config.height, config.height, generator=generator)
    recorder = _Recorder(model)
    with torch.no_grad():
        sample_ddim(recorder, noise, context, n=CALIBRATION_STEPS, timesteps=schedule.timesteps,
                    beta1=schedule.beta1, beta2=schedule.beta2)
    return recorder.feeds, recorder.outputs


def to_int8(unet_onnx: Path, feeds: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """A QDQ int8 copy of the fp32 graph at `unet_onnx`, calibrated on `feeds`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="spritegen-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(unet_onnx), str(prepared))
        quantize_static(str(prepared), str(quantized), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS))
        model = onnx.load(str(quantized))
    spec = GRAPHS["unet"]
    found = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if found != ([s.name for s in spec.inputs], [s.name for s in spec.outputs]):
        raise ExportError(f"int8 quantization changed the network's inputs/outputs to {found}; "
                          "report this with your onnxruntime version")
    return model


def int8_weight_count(model: onnx.ModelProto) -> int:
    """Initializers stored as int8: proof the file really holds quantized weights."""
    return sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8)
