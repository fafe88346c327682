"""examples/web/noise.js against the Python runtime's portable noise, bit for bit (and
spritegen.js's pure helpers under node: the DDIM step pairs and DPM-Solver++'s step indices
against the contract's, the RGBA mapping against runtime/images.py's).

node runs noise.js through tests/web/node_driver.mjs; its float32 output must equal
`spritegen.runtime.noise` (itself checked against a scalar transcription of docs/noise.md
and Random123's known answers in tests/test_noise.py) bit for bit, for edge and random
seeds, streams and counts, and in the two batch forms a sampling call uses. Skips only
when node is absent.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spritegen.contract import ddim_pairs, dpmpp_indices, solver_triples
from spritegen.runtime import Sampler
from spritegen.runtime.images import to_pixels
from spritegen.runtime.noise import box_muller64, draw, normals
from tests.test_noise import KATS

DRIVER = Path(__file__).resolve().parent / "web" / "node_driver.mjs"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")


def run_node(cases: list[dict]) -> list:
    """node_driver.mjs's answers to `cases` (its header lists the forms)."""
    result = subprocess.run([NODE, str(DRIVER)], input=json.dumps(cases), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def floats(encoded: str) -> np.ndarray:
    """The driver's base64 of little-endian float32 bytes, as an array."""
    return np.frombuffer(base64.b64decode(encoded), dtype="<f4").astype(np.float32)


def assert_bitwise(js: np.ndarray, ours: np.ndarray, what: str) -> None:
    assert js.shape == ours.shape, what
    differ = np.flatnonzero(js.view(np.uint32) != ours.view(np.uint32))
    assert differ.size == 0, (f"{what}: {differ.size} of {ours.size} floats differ, first at {differ[0]}: "
                              f"noise.js {js[differ[0]]!r}, numpy {ours[differ[0]]!r}")


@pytest.mark.fast
def test_philox_known_answers() -> None:
    answers = run_node([{"philox": [*counter, *key]} for counter, key, _ in KATS])
    for (counter, key, expected), got in zip(KATS, answers):
        assert tuple(got) == expected, f"noise.js philox{counter, key}"


def test_normals_equal_numpy_bit_for_bit_for_many_seeds_and_streams() -> None:
    rng = random.Random(20261129)
    seeds = [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1] + [rng.getrandbits(64) for _ in range(10)] + \
            [rng.getrandbits(32) for _ in range(4)]
    cases = []
    for k, seed in enumerate(seeds):
        for stream, count in ((0, 768), (1 + k, 13), (500, 3 * 768), (2**32 - 1, 5), (rng.getrandbits(32), 1)):
            cases.append({"seed": str(seed), "stream": stream, "count": count})
    cases += [{"seed": "0", "stream": 0, "count": 0}, {"seed": str(2**64 - 1), "stream": 3, "count": 100_003}]
    total = 0
    for case, encoded in zip(cases, run_node(cases)):
        ours = normals(int(case["seed"]), case["stream"], case["count"])
        assert_bitwise(floats(encoded), ours, f"normals{case}")
        total += ours.size
    assert total > 150_000  # guards against a case list that silently shrank


def test_box_muller_equals_numpy_in_float64_before_rounding() -> None:
    """The float64 r cos / r sin, before the one rounding to float32, on words at every branch
    edge (bitlength, the sqrt2 fold, quadrants) and 20,000 random pairs: equal to the last bit,
    so even a change that float32 would hide (one ulp of a constant, a dropped series term)
    fails here."""
    edges = [0, 1, 2, 3, 0x3FFFFFFF, 0x40000000, 0x5A827999, 0x5A82799A, 0x7FFFFFFF, 0x80000000,
             0xBFFFFFFF, 0xC0000000, 0xFFFFFFFE, 0xFFFFFFFF]
    rng = random.Random(7)
    pairs = [(a, b) for a in edges for b in edges] + [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(20_000)]
    (encoded,) = run_node([{"pairs": pairs}])
    js = np.frombuffer(base64.b64decode(encoded), dtype="<f8").reshape(-1, 2)
    a, b = (np.array(column, np.uint64) for column in zip(*pairs))
    n0, n1 = box_muller64(a, b)
    ours = np.stack([n0, n1], axis=1)
    differ = np.flatnonzero(js.view(np.uint64) != ours.view(np.uint64))
    assert differ.size == 0, f"{differ.size} float64 values differ, first pair {pairs[differ[0] // 2]}"


def test_batches_follow_the_seed_semantics(sampler: Sampler) -> None:
    """One seed for a batch: one stream in C order (Sampler.noise's x_T); a list of seeds:
    row r is seed[r]'s batch-1 draw (runtime.noise.draw)."""
    shape = (3, *sampler.image_shape)
    per_row = int(np.prod(shape[1:]))
    seeds = [7, 8, 2**64 - 1]
    one, rows, step = run_node([
        {"seeds": "7", "batch": 3, "stream": 0, "per_row": per_row},
        {"seeds": [str(s) for s in seeds], "batch": 3, "stream": 0, "per_row": per_row},
        {"seeds": [str(s) for s in seeds], "batch": 3, "stream": 480, "per_row": per_row},
    ])
    assert_bitwise(floats(one).reshape(shape), sampler.noise(3, 7), "batch of 3, one seed")
    assert_bitwise(floats(rows).reshape(shape), sampler.noise(3, seeds), "batch of 3, one seed per row")
    assert_bitwise(floats(step), draw(seeds, [480], per_row).ravel(), "step 480's noise, one seed per row")


@pytest.mark.parametrize("bad", [-1, 1.5, "abc", str(2**64), 2**53 + 2])
def test_bad_seeds_are_refused_with_a_message(bad: object) -> None:
    (answer,) = run_node([{"bad": bad}])
    assert answer.startswith(("RangeError: seed", "TypeError: seed")), answer


@pytest.mark.fast
def test_spritegen_js_ddim_pairs_are_the_contracts() -> None:
    """spritegen.js holds one piece of sampler logic, the step pairs: equal to contract.ddim_pairs
    for every n of the course's T (and a T it does not divide), and n out of range refused."""
    cases = [(500, n) for n in range(1, 501)] + [(7, n) for n in range(1, 8)]
    bad = [{"ddim_pairs": [500, 0]}, {"ddim_pairs": [500, 501]}]
    answers = run_node([{"ddim_pairs": [T, n]} for T, n in cases] + bad)
    for (T, n), pairs in zip(cases, answers):
        assert [tuple(p) for p in pairs] == ddim_pairs(T, n), (T, n)
    assert all(a.startswith("SpriteGenError: DDIM steps n must be an integer in 1..500") for a in answers[-2:])


def test_spritegen_js_solver_steps_are_the_contracts() -> None:
    """DPM-Solver++'s step indices and per-call triples in spritegen.js: equal to
    contract.dpmpp_indices and contract.solver_triples for every n of the course's T, a large
    T (integer math past float32) and a T that n does not divide; n out of range refused."""
    cases = [(500, n) for n in range(1, 501)] + [(7, n) for n in range(1, 8)] + [(10_000, n) for n in (3, 7, 9_999)]
    bad = [{"dpmpp_indices": [500, 0]}, {"dpmpp_indices": [500, 501]}]
    answers = run_node([{"dpmpp_indices": [T, n]} for T, n in cases] + bad)
    for (T, n), (indices, triples) in zip(cases, answers):
        assert indices == dpmpp_indices(T, n), (T, n)
        assert [tuple(t) for t in triples] == solver_triples(indices), (T, n)
    assert all(a.startswith("SpriteGenError: DPM-Solver++ steps n must be an integer in 1..500")
               for a in answers[-2:])


def test_spritegen_js_pixels_are_to_pixels() -> None:
    """toImageData's RGBA equals runtime/images.py's to_pixels exactly, on random values, the
    clip edges, and values whose float32 * 255 lands exactly on .5 (numpy rounds half to even)."""
    rng = np.random.default_rng(3)
    ties = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(255) * 2 - 1  # near each .5
    values = np.concatenate([rng.uniform(-1.2, 1.2, 4 * 768 - 256 - 4).astype(np.float32), ties,
                             np.float32([-1, 1, -5, 5])])
    sprites = values.reshape(4, 3, 16, 16)
    (encoded,) = run_node([{"to_image": base64.b64encode(sprites.astype("<f4").tobytes()).decode(),
                            "shape": list(sprites.shape)}])
    rgba = np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(4, 16, 16, 4)
    for k in range(4):
        assert np.array_equal(rgba[k, :, :, :3], to_pixels(sprites[k])), k
    assert (rgba[:, :, :, 3] == 255).all()
