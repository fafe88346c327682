"""The portable noise generator (docs/noise.md): known answers, the vectorised numpy code
against a plain scalar re-implementation of the spec (bit for bit), its distribution, and
how the Sampler draws from it (streams, per-row seeds, the manifest record)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spritegen.contract import MANIFEST_NOISE_KEY, NOISE, ddim_pairs
from spritegen.errors import ExportDirError, InputError
from spritegen.runtime import Sampler
from spritegen.runtime.noise import _cos_sin, _radius, box_muller, draw, normals, philox
from tests.runtime_support import copy_export

MASK = 0xFFFFFFFF
# Random123's tests/kat_vectors for philox4x32-10: counter, key -> output.
KATS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
EDGE_SEEDS = [0, 1, 2**32 - 1, 2**32, 2**64 - 1, 0x0123456789ABCDEF]
EDGE_STREAMS = [0, 1, 2, 499, 500, 2**32 - 1]


# ------------------------------------------------- a scalar re-implementation of the spec
def scalar_philox(counter: tuple[int, ...], key: tuple[int, int]) -> tuple[int, ...]:
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
    return c0, c1, c2, c3


def scalar_box_muller(a: int, b: int) -> tuple[np.float32, np.float32]:
    k = a.bit_length()
    f = (2 * a + 1) / 2.0**k
    if f > 1.4142135623730951:
        f, k = f / 2, k + 1
    s = (f - 1) / (f + 1)
    s2 = s * s
    p = 1 / 21
    for j in range(9, -1, -1):
        p = p * s2 + 1 / (2 * j + 1)
    r = math.sqrt(-2 * ((k - 33) * 0.6931471805599453 + (s + s) * p))
    sin_c, cos_c = [1.0], [1.0]
    for j in range(1, 11):
        sin_c.append(sin_c[-1] / (-(2 * j) * (2 * j + 1)))
        cos_c.append(cos_c[-1] / (-(2 * j - 1) * (2 * j)))
    phi = (b & 0x3FFFFFFF) * 2.0**-30 * 1.5707963267948966
    ph2 = phi * phi
    sp, cp = sin_c[10], cos_c[10]
    for j in range(9, -1, -1):
        sp, cp = sp * ph2 + sin_c[j], cp * ph2 + cos_c[j]
    sn, cs = phi * sp, cp
    cos, sin = [(cs, sn), (-sn, cs), (-cs, -sn), (sn, -cs)][b >> 30]
    return np.float32(r * cos), np.float32(r * sin)


def scalar_normals(seed: int, stream: int, count: int) -> np.ndarray:
    out: list[np.float32] = []
    for j in range(-(-count // 4)):
        x0, x1, x2, x3 = scalar_philox((j, stream, 0, 0), (seed & MASK, seed >> 32))
        out += [*scalar_box_muller(x0, x1), *scalar_box_muller(x2, x3)]
    return np.array(out[:count], np.float32)


# ----------------------------------------------------------------------------- bits
@pytest.mark.parametrize("counter, key, expected", KATS)
@pytest.mark.fast
def test_philox_known_answers(counter: tuple, key: tuple, expected: tuple) -> None:
    words = philox(*(np.array([v], np.uint64) for v in (*counter, *key)))
    assert tuple(int(w[0]) for w in words) == expected
    assert scalar_philox(counter, key) == expected  # the test's own reference is right too


def test_vectorised_equals_scalar_spec_bit_for_bit() -> None:
    """Every (edge seed, edge stream), 37 values (a discarded block tail), bitwise."""
    for seed in EDGE_SEEDS:
        for stream in EDGE_STREAMS:
            got, want = normals(seed, stream, 37), scalar_normals(seed, stream, 37)
            assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), (seed, stream)


def test_box_muller_on_edge_and_random_words_bit_for_bit() -> None:
    """Words at the edges of every branch (bitlength, the sqrt2 fold, quadrants), then 20,000
    random pairs: the numpy path and the scalar spec agree exactly."""
    edges = [0, 1, 2, 3, 0x3FFFFFFF, 0x40000000, 0x5A827999, 0x5A82799A, 0x7FFFFFFF, 0x80000000,
             0xBFFFFFFF, 0xC0000000, MASK - 1, MASK]
    rng = np.random.default_rng(0)  # only picks the words to test
    a = np.concatenate([np.repeat(edges, len(edges)), rng.integers(0, 2**32, 20_000)]).astype(np.uint64)
    b = np.concatenate([np.tile(edges, len(edges)), rng.integers(0, 2**32, 20_000)]).astype(np.uint64)
    n0, n1 = box_muller(a, b)
    want = np.array([scalar_box_muller(int(x), int(y)) for x, y in zip(a, b)], np.float32)
    assert n0.tobytes() == np.ascontiguousarray(want[:, 0]).tobytes()
    assert n1.tobytes() == np.ascontiguousarray(want[:, 1]).tobytes()


def test_series_are_accurate_to_float64_rounding() -> None:
    """The polynomial log (through the radius) and sin/cos stay within a few float64 ulps of
    the C library's on 20,000 random words: the coefficients and the argument reduction are
    right, not merely self-consistent (a wrong low-order term or quadrant moves them by far more)."""
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 2**32, 20_000).astype(np.uint64) for _ in range(2))
    r = _radius(a)
    cos, sin = _cos_sin(b)
    u = (2 * a.astype(np.float64) + 1) * 2.0**-33
    assert np.abs(r - np.sqrt(-2 * np.log(u))).max() < 1e-13  # r <= 6.8; log's error 1e-14 relative
    theta = b.astype(np.float64) * 2.0**-32 * 2 * math.pi  # itself rounded: ~1.4e-15
    assert np.abs(cos - np.cos(theta)).max() < 4e-15 and np.abs(sin - np.sin(theta)).max() < 4e-15


def test_draw_is_many_normals_calls() -> None:
    """draw(seeds, streams, n)[s, r] == normals(seeds[r], streams[s], n), across chunk borders."""
    seeds, streams = [3, 2**64 - 1, 3], [0, 5, 2]
    got = draw(seeds, streams, 70_001)  # > one chunk of blocks per (stream, seed) pair
    for s, stream in enumerate(streams):
        for r, seed in enumerate(seeds):
            assert got[s, r].tobytes() == normals(seed, stream, 70_001).tobytes()
    assert normals(9, 4, 10).tobytes() == normals(9, 4, 13)[:10].tobytes()  # a prefix, whatever the count


def test_bad_seeds_and_streams_are_refused() -> None:
    for bad in (-1, 2**64, 1.0, "7", True, None):
        with pytest.raises(ValueError, match="seed must be an integer"):
            normals(bad, 0, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="streams"):
        normals(0, 2**32, 4)


# ---------------------------------------------------------------------- distribution
def test_distribution_of_a_million_draws() -> None:
    """Mean, std, Kolmogorov-Smirnov distance to N(0, 1), range, and no correlation between
    streams or neighbouring seeds. Bounds are ~5 standard errors at n = 1e6 (KS: the 1e-3
    critical value 1.95 / sqrt(n)), so a correct generator fails them with negligible chance."""
    n = 1_000_000
    x = normals(2024, 0, n).astype(np.float64)
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.std() - 1) < 5 / math.sqrt(2 * n)
    cdf = np.frompyfunc(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))), 1, 1)
    sorted_x = np.sort(x)
    phi = cdf(sorted_x).astype(np.float64)
    ks = max((np.arange(1, n + 1) / n - phi).max(), (phi - np.arange(n) / n).max())
    assert ks < 1.95 / math.sqrt(n), f"KS distance {ks:.2e}"
    assert np.abs(x).max() <= math.sqrt(2 * 33 * math.log(2)) + 1e-6  # the radius bound of u >= 2^-33
    assert abs((x ** 4).mean() - 3) < 0.05  # kurtosis: tails as thick as a normal's (std err ~0.01)
    others = [normals(2024, 1, n), normals(2025, 0, n)]
    for y in others:
        assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(n)


# ----------------------------------------------------------------------- in the Sampler
def _stream_step_noise(sampler: Sampler, seed: int, batch: int, streams: list[int]) -> np.ndarray:
    """step_noise (T, B, C, H, W) holding normals(seed, i) at i-1 for the given streams."""
    shape = (batch, *sampler.image_shape)
    out = np.zeros((sampler.timesteps, *shape), np.float32)
    for i in streams:
        out[i - 1] = normals(seed, i, int(np.prod(shape))).reshape(shape)
    return out


@pytest.mark.fast
def test_seeded_calls_draw_stream_0_and_stream_i(sampler: Sampler) -> None:
    """x_T is stream 0 and the step starting at i is stream i, in C order over the batch:
    the seeded call equals the call fed those arrays, byte for byte."""
    seed, batch = 2**64 - 2, 2
    x_T = normals(seed, 0, batch * 768).reshape(batch, *sampler.image_shape)
    assert sampler.noise(batch, seed).tobytes() == x_T.tobytes()
    streams = [i for i, _ in ddim_pairs(sampler.timesteps, 5)]
    context = ["hero", {"food": 1, "spell": 0.5}]
    injected = sampler.ddim(context, n=5, eta=1.0, noise=x_T, step_noise=_stream_step_noise(sampler, seed, 2, streams))
    assert sampler.ddim(context, n=5, eta=1.0, seed=seed).tobytes() == injected.tobytes()


def test_per_row_seeds_and_row_zero(sampler: Sampler) -> None:
    """A sequence of seeds draws row r as the batch-1 call with seeds[r] (x_T and every step's
    noise); with one seed, row 0 of a batch equals the batch-1 call."""
    context = ["spell", "hero", "spell"]
    seeds = [7, 2**63 + 5, 7]
    merged = sampler.ddim(context, n=20, eta=1.0, seed=seeds)
    for r in (0, 1):
        assert merged[r].tobytes() == sampler.ddim([context[r]], n=20, eta=1.0, seed=seeds[r])[0].tobytes(), r
    assert merged[2].tobytes() == merged[0].tobytes()
    one_seed = sampler.ddim(context, n=20, eta=1.0, seed=np.uint64(7))
    assert one_seed[0].tobytes() == merged[0].tobytes() and one_seed[2].tobytes() != merged[2].tobytes()
    assert sampler.ddim(None, n=3, seed=[1, 2]).shape == (2, *sampler.image_shape)  # batch from the seeds


def test_step_noise_prefetch_crosses_chunks() -> None:
    """plan.Noise draws many steps' streams per pass: over DDPM's 499 noisy steps at batch 1
    (two passes) and batch 3 (five), each step still gets exactly normals(seed, i)."""
    from spritegen.runtime.plan import Noise

    for seeds, batch in ((5, 1), ((5, 6, 2**64 - 1), 3)):
        shape = (batch, 3, 16, 16)
        noise = Noise(None, None, seeds, shape, streams=range(500, 1, -1))
        out = np.empty(shape, np.float32)
        for i in (500, 499, 159, 158, 2):
            noise.fill(i, out)
            if isinstance(seeds, int):
                want = normals(seeds, i, out.size).reshape(shape)
            else:
                want = np.stack([normals(s, i, out[0].size).reshape(shape[1:]) for s in seeds])
            assert out.tobytes() == want.tobytes(), (seeds, i)


def test_bad_seeds_are_one_line_input_errors(sampler: Sampler) -> None:
    cases = {-1: "seed must be an integer", 2**64: "seed must be an integer", 1.5: "seed must be an integer",
             "3": "seed must be an integer", (1, -2): "seed must be an integer", (1, 2, 3): "3 seeds for a batch of 2"}
    for seed, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            sampler.ddim(["hero", "food"], n=2, seed=seed)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    a, b = sampler.ddim("hero", n=2, eta=1.0), sampler.ddim("hero", n=2, eta=1.0)  # None: fresh seeds
    assert a.tobytes() != b.tobytes()


def test_manifest_records_the_generator(export_dir: Path, tmp_path: Path) -> None:
    """The export names the generator; a runtime refuses one it does not implement and reads a
    manifest without the key (exported before the record existed) as the current one."""
    data = json.loads((export_dir / "manifest.json").read_text())
    assert data[MANIFEST_NOISE_KEY] == {"generator": NOISE.generator, "version": NOISE.version}
    copy = copy_export(export_dir, tmp_path / "export")
    for entry, refused in (({"generator": NOISE.generator, "version": 2}, True),
                           ({"generator": "numpy-default_rng", "version": 1}, True), ("x", True), (None, False)):
        edited = {k: v for k, v in data.items() if k != MANIFEST_NOISE_KEY}
        if entry is not None:
            edited[MANIFEST_NOISE_KEY] = entry
        (copy / "manifest.json").write_text(json.dumps(edited))
        if refused:
            with pytest.raises(ExportDirError, match="noise generator") as info:
                Sampler.load(copy, provider="cpu")
            assert "\n" not in str(info.value)
        else:
            assert Sampler.load(copy, provider="cpu").noise(1, 3).tobytes() == normals(3, 0, 768).tobytes()
