"""An int8 (QDQ) unet.onnx for ONNX Runtime's VNNI/AMX int8 kernels, and what it costs in quality.

ORT's CPU provider has no bf16 kernels; int8 is its reduced-precision path. The model is
quantized statically (per-channel int8 weights, uint8 activations) with activations
calibrated on real DDIM-25 trajectories of the fp32 export (every step's state, every
class), so the ranges are the ones sampling visits. Quality is measured where users see
it: DDIM-25 sprites from the same x_T through the runtime's Sampler, fp32 vs int8 (the
int8 file swapped into a copy of the export, its manifest hash updated).
"""

from __future__ import annotations

import json
import shutil
from hashlib import sha256
from pathlib import Path

import numpy as np

from spritegen.contract import GRAPHS, MANIFEST_FILE, ddim_pairs
from spritegen.runtime import Sampler

UNET = GRAPHS["unet"].file


def calibration(sampler: Sampler, per_class: int = 2, n: int = 25) -> list[dict[str, np.ndarray]]:
    """unet inputs seen along fp32 DDIM-n trajectories, one feed per step (batch = classes x per_class)."""
    names = [c for c in sampler.class_names for _ in range(per_class)]
    context = sampler.context(names)
    noise = np.random.default_rng(123).standard_normal((len(names), *sampler.image_shape), dtype=np.float32)
    _, states = sampler.ddim(context, n=n, noise=noise, save_rate=1, impl="unet")
    xs = [noise, *states[:-1]]  # the state each step's network call sees
    ts = [i / sampler.timesteps for i, _ in ddim_pairs(sampler.timesteps, n)]
    return [{"x": x, "t": np.full((len(names),), t, np.float32), "c": context} for x, t in zip(xs, ts)]


def quantize(export_dir: Path, work: Path) -> Path:
    """An int8 QDQ copy of the export in `work`/int8-export (unet.onnx replaced)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = iter(calibration(Sampler.load(export_dir, provider="cpu", impl="unet")))

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return next(feeds, None)

    target = work / "int8-export"
    shutil.copytree(export_dir, target)
    pre = work / "unet-pre.onnx"
    quant_pre_process(str(export_dir / UNET), str(pre))
    quantize_static(str(pre), str(target / UNET), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    digest = sha256((target / UNET).read_bytes()).hexdigest()
    entry = manifest["files"][UNET]
    manifest["files"][UNET] = {**entry, "sha256": digest} if isinstance(entry, dict) else digest
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    return target


def quality(export_dir: Path, int8_dir: Path, per_class: int = 4, n: int = 25) -> dict:
    """DDIM-n sprites, fp32 vs int8, same noise: errors in [-1, 1] units and in 8-bit pixel levels."""
    fp32 = Sampler.load(export_dir, provider="cpu", impl="unet")
    int8 = Sampler.load(int8_dir, provider="cpu", impl="unet")
    names = [c for c in fp32.class_names for _ in range(per_class)]
    a = fp32.ddim(names, n=n, seed=7)
    b = int8.ddim(names, n=n, seed=7)
    diff = np.abs(a - b)
    levels = diff * 127.5  # [-1, 1] -> 0..255
    return {"sprites": len(names), "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "mean_levels": float(levels.mean()), "p99_levels": float(np.percentile(levels, 99)),
            "pixels_off_by_more_than_8_levels": float((levels > 8).mean())}
