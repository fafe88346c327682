"""The portable seeded noise ("spritegen-normal" version 1), vectorised in numpy.

Same seed, same float32 arrays in Python, C++ (examples/cpp/noise.cpp) and JavaScript:
the specification is docs/noise.md, its constants `spritegen.contract.NOISE`.

1. Bits: Philox4x32-10 (Salmon et al. 2011), counter (j, stream, 0, 0), key (seed mod
   2^32, seed >> 32): block j of a stream gives four uint32 words.
2. Each pair of words (a, b) -> two normals by Box-Muller, every value float64 until the
   final rounding to float32: radius sqrt(-2 log u) with u = (2a+1) 2^-33 and log from the
   series 2 atanh(s) on a mantissa folded into [sqrt2/2, sqrt2]; angle 2 pi b / 2^32 from
   the top two bits (quadrant) and Taylor series of sin and cos on [0, pi/2).
   Only + - * / and sqrt appear, each correctly rounded by IEEE 754 in every language,
   evaluated in the written order, so the result does not depend on any math library.

Everything is vectorised over blocks (and over seeds and streams): `draw` computes many
streams of many seeds in one pass, in chunks that bound the temporaries' memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spritegen.contract import NOISE
from spritegen.errors import shown

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_M0, _M1 = (np.uint64(m) for m in NOISE.philox_m)
_W0, _W1 = (np.uint64(w) for w in NOISE.philox_w)
_CHUNK_BLOCKS = 1 << 15  # blocks per pass: ~20 float64/uint64 temporaries of this size


def _series() -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """L, S, C of the spec, each coefficient one correctly rounded float64 division."""
    logs = tuple(1 / (2 * j + 1) for j in range(NOISE.log_terms + 1))
    sin, cos = [1.0], [1.0]
    for j in range(1, NOISE.trig_terms + 1):
        sin.append(sin[-1] / (-(2 * j) * (2 * j + 1)))  # (-1)^j / (2j+1)!
        cos.append(cos[-1] / (-(2 * j - 1) * (2 * j)))  # (-1)^j / (2j)!
    return logs, tuple(sin), tuple(cos)


LOG_COEFFS, SIN_COEFFS, COS_COEFFS = _series()


def philox(c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, k0: np.ndarray,
           k1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32-10 on broadcastable uint64 arrays holding uint32 values; four uint64 arrays out.

    One round: (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2 (64-bit products);
    new = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); the key is bumped between rounds."""
    for r in range(NOISE.philox_rounds):
        if r:
            k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
        p0, p1 = _M0 * c0, _M1 * c2  # exact: both factors < 2^32
        c0, c1, c2, c3 = (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32
    return c0, c1, c2, c3


def box_muller(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 normals from uint32 words a (radius) and b (angle): docs/noise.md section 3."""
    n0, n1 = box_muller64(a, b)
    return n0.astype(np.float32), n1.astype(np.float32)  # round to nearest even, once


def box_muller64(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 products r cos and r sin before the final rounding (box_muller)."""
    r = _radius(a)
    cos, sin = _cos_sin(b)
    return r * cos, r * sin


def _radius(a: np.ndarray) -> np.ndarray:
    """sqrt(-2 log u), u = (2a + 1) 2^-33, with log(u) = (k - 33) ln2 + 2 atanh(s)."""
    mantissa, exponent = np.frexp((2 * a + 1).astype(np.float64))  # 2a+1 = mantissa 2^exponent, exact
    f = mantissa * 2.0  # in [1, 2), exact
    k = exponent.astype(np.float64) - 1.0  # = bitlength(a)
    fold = f > NOISE.sqrt2
    f = np.where(fold, f / 2.0, f)  # exact
    k = k + fold
    s = (f - 1.0) / (f + 1.0)
    s2 = s * s
    p = np.full_like(s, LOG_COEFFS[-1])
    for coeff in LOG_COEFFS[-2::-1]:  # Horner, two roundings per term (no FMA in numpy ufuncs)
        p = p * s2 + coeff
    logu = (k - 33.0) * NOISE.ln2 + (s + s) * p
    return np.sqrt(-2.0 * logu)


def _cos_sin(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of 2 pi b / 2^32: quadrant b >> 30, series on phi in [0, pi/2)."""
    quadrant = b >> np.uint64(30)
    phi = (b & np.uint64(0x3FFFFFFF)).astype(np.float64) * 2.0 ** -30 * NOISE.half_pi
    ph2 = phi * phi
    sp, cp = np.full_like(phi, SIN_COEFFS[-1]), np.full_like(phi, COS_COEFFS[-1])
    for s_j, c_j in zip(SIN_COEFFS[-2::-1], COS_COEFFS[-2::-1]):
        sp = sp * ph2 + s_j
        cp = cp * ph2 + c_j
    sin_phi, cos_phi = phi * sp, cp
    odd = (quadrant & np.uint64(1)).astype(bool)  # quadrants 1, 3 swap cos and sin
    cos, sin = np.where(odd, sin_phi, cos_phi), np.where(odd, cos_phi, sin_phi)
    cos = np.where((quadrant == 1) | (quadrant == 2), -cos, cos)  # negation is exact
    sin = np.where(quadrant >= 2, -sin, sin)
    return cos, sin


def check_seed(seed: object) -> int:
    """`seed` as a Python int in [0, 2^64); ValueError otherwise (callers add their context)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"a seed must be an integer in [0, 2^{NOISE.seed_bits}), got {shown(seed)}")
    value = int(seed)
    if not 0 <= value < 1 << NOISE.seed_bits:
        raise ValueError(f"a seed must be an integer in [0, 2^{NOISE.seed_bits}), got {value}")
    return value


def draw(seeds: Sequence[int], streams: Sequence[int], count: int) -> np.ndarray:
    """float32 (len(streams), len(seeds), count): out[s, r] = normals(seeds[r], streams[s], count)."""
    keys = np.array([check_seed(seed) for seed in seeds], dtype=np.uint64)
    lanes = np.array([int(s) for s in streams], dtype=np.uint64)
    if lanes.size and (int(lanes.max()) >= 1 << NOISE.stream_bits):
        raise ValueError(f"streams must be integers in [0, 2^{NOISE.stream_bits}), got {max(streams)}")
    per = NOISE.normals_per_block
    blocks = -(-count // per)
    if blocks > 1 << 32:
        raise ValueError(f"count {count} exceeds 2^32 blocks of one stream")
    out = np.empty((lanes.size, keys.size, blocks * per), np.float32)
    k0 = (keys & _MASK32)[None, :, None]  # (1, R, 1)
    k1 = (keys >> _SHIFT32)[None, :, None]
    c1 = lanes[:, None, None]  # (S, 1, 1)
    zero = np.zeros((1, 1, 1), np.uint64)
    step = max(1, _CHUNK_BLOCKS // max(1, lanes.size * keys.size))
    for start in range(0, blocks, step):
        stop = min(blocks, start + step)
        c0 = np.arange(start, stop, dtype=np.uint64)[None, None, :]  # (1, 1, J)
        x0, x1, x2, x3 = philox(c0, c1, zero, zero, k0, k1)  # each (S, R, J)
        n = out[:, :, start * per:stop * per].reshape(lanes.size, keys.size, stop - start, per)
        n[..., 0], n[..., 1] = box_muller(x0, x1)
        n[..., 2], n[..., 3] = box_muller(x2, x3)
    return out[:, :, :count]


def normals(seed: int, stream: int, count: int) -> np.ndarray:
    """float32[count]: the first `count` normals of `stream` under `seed` (docs/noise.md)."""
    return np.ascontiguousarray(draw([seed], [stream], count)[0, 0])
