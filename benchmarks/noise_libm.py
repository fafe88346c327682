"""How often a libm-based Box-Muller would round to a different float32 than spritegen-normal.

`python -m benchmarks.noise_libm [--pairs N] [--out benchmarks/results/noise_libm.json]`

spritegen-normal computes log, sin and cos with fixed polynomials in IEEE float64 + - * /
(docs/noise.md), so every runtime rounds the same float64 to the same float32. The
textbook Box-Muller, r = sqrt(-2 log u), (cos, sin)(2 pi b / 2^32), calls the math
library instead, and math libraries disagree in the last float64 bits. This script
measures what that would cost on real generator words (Philox blocks of seed 0):

- ours vs numpy's log/cos/sin, and ours vs the C library's (Python's `math`, glibc here):
  the fraction of float32 normals that differ and the largest difference in float32 ulps
  (plus the largest float64 difference before rounding);
- numpy's vs the C library's: two math libraries on one machine, the very disagreement a
  portable generator has to be immune to.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from spritegen.contract import NOISE
from spritegen.runtime.noise import box_muller64, philox

DEFAULT_OUT = Path(__file__).parent / "results" / "noise_libm.json"


def generator_words(pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """`pairs` (a, b) uint32 word pairs as the generator uses them: seed 0, stream 0."""
    blocks = -(-pairs // 2)
    zero = np.zeros(1, np.uint64)
    x0, x1, x2, x3 = philox(np.arange(blocks, dtype=np.uint64), zero, zero, zero, zero, zero)
    return np.stack([x0, x2], 1).ravel()[:pairs], np.stack([x1, x3], 1).ravel()[:pairs]


def libm_numpy(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook transform with numpy's float64 log, cos and sin."""
    u = (2 * a + 1).astype(np.float64) * 2.0 ** -33
    r = np.sqrt(-2.0 * np.log(u))
    theta = b.astype(np.float64) * 2.0 ** -32 * (2 * math.pi)
    return r * np.cos(theta), r * np.sin(theta)


def libm_c(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same with the C library's log, cos and sin (Python's math module)."""
    out = np.empty((2, a.size))
    for k, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        r = math.sqrt(-2.0 * math.log((2 * x + 1) * 2.0 ** -33))
        theta = y * 2.0 ** -32 * (2 * math.pi)
        out[0, k], out[1, k] = r * math.cos(theta), r * math.sin(theta)
    return out[0], out[1]


def _ordered(x: np.ndarray) -> np.ndarray:
    """float32 bit patterns mapped to integers that count ulps across zero."""
    bits = x.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def compare(first: tuple[np.ndarray, ...], second: tuple[np.ndarray, ...]) -> dict:
    """Differences of two float64 transforms after each is rounded to float32 once."""
    x64, y64 = np.concatenate(first), np.concatenate(second)
    x32, y32 = x64.astype(np.float32), y64.astype(np.float32)
    ulps = np.abs(_ordered(x32) - _ordered(y32))
    return {"normals": int(x32.size), "float32_differ": int((ulps > 0).sum()),
            "float32_differ_fraction": float((ulps > 0).mean()), "max_float32_ulps": int(ulps.max()),
            "float64_differ_fraction": float((x64 != y64).mean()),
            "max_abs_float64_difference": float(np.abs(x64 - y64).max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1 << 23, help="word pairs (two normals each) for numpy")
    parser.add_argument("--c-pairs", type=int, default=1 << 20, help="pairs for the C library (a Python loop)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.pairs < 1 or not 1 <= args.c_pairs <= args.pairs:
        print("error: need --pairs >= 1 and 1 <= --c-pairs <= --pairs", file=sys.stderr)
        return 2
    start = time.perf_counter()
    a, b = generator_words(args.pairs)
    ours, numpy_libm = box_muller64(a, b), libm_numpy(a, b)
    c_ours, c_numpy = [x[:args.c_pairs] for x in ours], [x[:args.c_pairs] for x in numpy_libm]
    c_libm = libm_c(a[:args.c_pairs], b[:args.c_pairs])
    record = {
        "generator": NOISE.manifest_entry(),
        "words": "Philox4x32-10 blocks of seed 0, stream 0",
        "ours_vs_numpy": compare(ours, numpy_libm),
        "ours_vs_c_libm": compare(c_ours, c_libm),
        "numpy_vs_c_libm": compare(c_numpy, c_libm),
        "conditions": {"numpy": np.__version__, "python": platform.python_version(),
                       "libc": " ".join(platform.libc_ver()), "machine": platform.machine(),
                       "seconds": round(time.perf_counter() - start, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.out)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
