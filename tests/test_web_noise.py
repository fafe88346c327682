"""examples/web/noise.js against the portable noise spec, bit for bit.

The spec ("spritegen-normal" v1, docs/web.md) is written out below once more as a plain
scalar Python reference, line by line, so a change in either implementation shows up as
differing float32 bits. node runs noise.js through tests/web/noise_driver.mjs; the test
skips only when node is absent.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tests.web_support import NODE, floats, run_node

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")

MASK = 0xFFFFFFFF
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
SQRT2, LN2, HALF_PI = 1.4142135623730951, 0.6931471805599453, 1.5707963267948966


# ------------------------------------------------------------- scalar reference
def philox(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0), p1 & MASK, ((p0 >> 32) ^ c3 ^ k1), p0 & MASK
    return c0, c1, c2, c3


L = [1 / (2 * j + 1) for j in range(11)]
S, C = [1.0], [1.0]
for _j in range(1, 11):
    S.append(S[-1] / -((2 * _j) * (2 * _j + 1)))
    C.append(C[-1] / -((2 * _j - 1) * (2 * _j)))


def box_muller(a: int, b: int) -> tuple[float, float]:
    k = a.bit_length()
    f = (2 * a + 1) / 2.0 ** k
    if f > SQRT2:
        f, k = f / 2, k + 1
    s = (f - 1) / (f + 1)
    s2 = s * s
    p = L[10]
    for j in range(9, -1, -1):
        p = p * s2 + L[j]
    r = math.sqrt(-2 * ((k - 33) * LN2 + (s + s) * p))
    q, w = b >> 30, (b & 0x3FFFFFFF) * 2.0 ** -30
    phi = w * HALF_PI
    ph2 = phi * phi
    sp, cp = S[10], C[10]
    for j in range(9, -1, -1):
        sp = sp * ph2 + S[j]
    for j in range(9, -1, -1):
        cp = cp * ph2 + C[j]
    sin_phi, cos_phi = phi * sp, cp
    cos, sin = [(cos_phi, sin_phi), (-sin_phi, cos_phi), (-cos_phi, -sin_phi), (sin_phi, -cos_phi)][q]
    return r * cos, r * sin


def reference_normals(seed: int, stream: int, count: int) -> np.ndarray:
    key = (seed & MASK, seed >> 32)
    values: list[float] = []
    for j in range((count + 3) // 4):
        x0, x1, x2, x3 = philox((j, stream, 0, 0), key)
        values.extend(box_muller(x0, x1) + box_muller(x2, x3))
    return np.array(values[:count], np.float64).astype(np.float32)  # one rounding to nearest even


def assert_bitwise(js: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert js.shape == ref.shape, what
    differ = np.flatnonzero(js.view(np.uint32) != ref.view(np.uint32))
    assert differ.size == 0, f"{what}: {differ.size} of {ref.size} floats differ, first at {differ[0]}: " \
                             f"js {js[differ[0]]!r} vs reference {ref[differ[0]]!r}"


# -------------------------------------------------------------------- tests
KAT = [  # Random123's kat_vectors for philox4x32_10: counter, key, output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def test_philox_known_answers_in_python_and_js() -> None:
    js = run_node([{"philox": [*counter, *key]} for counter, key, _ in KAT])
    for (counter, key, expected), got in zip(KAT, js):
        assert philox(counter, key) == expected
        assert tuple(got) == expected, f"noise.js philox{counter, key}"


def test_normals_match_the_reference_bitwise_for_many_seeds_and_streams() -> None:
    rng = random.Random(20261129)
    seeds = [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1] + [rng.getrandbits(64) for _ in range(10)] + \
            [rng.getrandbits(32) for _ in range(4)]
    cases = []
    for k, seed in enumerate(seeds):
        for stream, count in ((0, 768), (1 + k, 13), (500, 6), (2**32 - 1, 5), (rng.getrandbits(32), 1)):
            cases.append({"seed": str(seed), "stream": stream, "count": count})
    cases.append({"seed": "0", "stream": 0, "count": 0})
    cases.append({"seed": str(2**64 - 1), "stream": 3, "count": 20000})  # many blocks
    js = run_node(cases)
    total = 0
    for case, encoded in zip(cases, js):
        ref = reference_normals(int(case["seed"]), case["stream"], case["count"])
        assert_bitwise(floats(encoded), ref, f"normals{case}")
        total += ref.size
    assert total > 30000  # the guard against a case list that silently shrank
    # A plain sanity check of the distribution (what the bits are for).
    sample = reference_normals(12345, 0, 20000).astype(np.float64)
    assert abs(sample.mean()) < 0.03 and abs(sample.std() - 1) < 0.03


def test_polynomial_box_muller_is_close_to_libm() -> None:
    """The polynomials stand in for log, sin and cos: against libm on the extreme words (a = 0:
    the largest radius; a = 2^32-1: u closest to 1; each quadrant boundary of b) and on random
    words they agree to within a few float64 ulps, far below float32's resolution."""
    rng = random.Random(5)
    words = [(0, 0), (MASK, MASK), (0, 1 << 30), (1, 2 << 30), (0x5A827999, 3 << 30), (0xB504F333, MASK >> 2)]
    words += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(2000)]
    worst = 0.0
    for a, b in words:
        n0, n1 = box_muller(a, b)
        radius = math.sqrt(-2 * math.log((2 * a + 1) * 2.0 ** -33))
        angle = 2 * math.pi * b / 2**32
        worst = max(worst, abs(n0 - radius * math.cos(angle)), abs(n1 - radius * math.sin(angle)))
    assert worst < 1e-13, worst


def test_batches_follow_the_seed_semantics() -> None:
    """One seed for a batch: one stream in C order; a list of seeds: row r is seed[r]'s batch-1 draw."""
    per_row = 3 * 16 * 16
    one, rows = run_node([
        {"seeds": "7", "batch": 3, "stream": 4, "per_row": per_row},
        {"seeds": ["7", "8", str(2**64 - 1)], "batch": 3, "stream": 4, "per_row": per_row},
    ])
    assert_bitwise(floats(one), reference_normals(7, 4, 3 * per_row), "batch of 3, one seed")
    expected = np.concatenate([reference_normals(s, 4, per_row) for s in (7, 8, 2**64 - 1)])
    assert_bitwise(floats(rows), expected, "batch of 3, one seed per row")


@pytest.mark.parametrize("bad", [-1, 1.5, "abc", str(2**64), 2**53 + 2])
def test_bad_seeds_are_refused_with_a_message(bad: object) -> None:
    (answer,) = run_node([{"bad": bad}])
    assert answer.startswith(("RangeError: seed", "TypeError: seed")), answer
