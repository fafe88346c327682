"""The runtime samples what the eager reference samples, deterministically, from any thread.

All on one export (conftest's `bundled_export`) of the bundled demo checkpoint; the
reference is `spritegen.export.reference` on the same checkpoint's eager model, fed
the same x_T and step noise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spritegen.contract import ddim_pairs, ddpm_keeps
from spritegen.export import load_model
from spritegen.export.reference import sample_ddim, sample_ddpm
from spritegen.errors import InputError
from spritegen.runtime import IMPLS, Sampler, limits
from spritegen.runtime.pool import RunnerPool
from tests.runtime_support import link_export, run_in_threads
from tests.tolerances import IMPL_ATOL, SAMPLE_ATOL

CONTEXT = np.array([[1, 0, 0, 0, 0], [0, 0, 1, 0.6, 0], [0, 0, 0, 0, 0]], np.float32)  # one-hot, blend, zero


@pytest.fixture(scope="session")
def sampler(bundled_sampler: Sampler) -> Sampler:
    """The demo's export (not conftest's tiny one): compared here with the demo's eager model."""
    return bundled_sampler


@pytest.fixture(scope="session")
def model() -> torch.nn.Module:
    """The bundled checkpoint's eager model, pinned shortcut and all, as the export saw it."""
    torch.set_num_threads(1)  # the machine is shared; one thread is as fast for batch <= 3
    return load_model(None)


def _noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
@pytest.mark.parametrize("impl", IMPLS)
def test_ddim25_equals_reference(sampler: Sampler, model: torch.nn.Module, impl: str, guidance: float) -> None:
    noise = _noise((3, 3, 16, 16), seed=1)
    expected, _ = sample_ddim(model, torch.from_numpy(noise), torch.from_numpy(CONTEXT), n=25, guidance=guidance)
    got = sampler.ddim(CONTEXT, n=25, noise=noise, guidance=guidance, impl=impl)
    error = float(np.abs(got - expected.numpy()).max())
    print(f"DDIM-25 {impl} guidance={guidance}: max abs error {error:.2e}")
    assert got.dtype == np.float32 and got.shape == (3, 3, 16, 16)
    assert error <= SAMPLE_ATOL


@pytest.fixture(scope="module")
def ddpm_case(model: torch.nn.Module) -> tuple[dict, np.ndarray, np.ndarray]:
    """One eager DDPM-500 run (batch 1, a blend) shared by both implementations' tests."""
    inputs = {"context": CONTEXT[1:2], "noise": _noise((1, 3, 16, 16), seed=2),
              "step_noise": _noise((500, 1, 3, 16, 16), seed=3)}
    expected, kept = sample_ddpm(model, *(torch.from_numpy(inputs[k]) for k in ("noise", "context")),
                                 step_noise=torch.from_numpy(inputs["step_noise"]))
    return inputs, expected.numpy(), kept.numpy()


@pytest.mark.parametrize("impl", ["unet", "step"])
def test_ddpm500_equals_reference(sampler: Sampler, ddpm_case: tuple, impl: str) -> None:
    inputs, expected, expected_kept = ddpm_case
    got, kept = sampler.ddpm(inputs["context"], noise=inputs["noise"], step_noise=inputs["step_noise"],
                             save_rate=20, impl=impl)
    error = float(np.abs(got - expected).max())
    print(f"DDPM-500 {impl}: max abs error {error:.2e}")
    assert error <= SAMPLE_ATOL
    assert kept.shape == expected_kept.shape  # the course's keep rule, same count and order
    # Intermediates are unclipped (|x| up to ~4 early on): the same relative bar as the sprites.
    assert np.abs(kept - expected_kept).max() <= SAMPLE_ATOL * max(1.0, float(np.abs(kept).max()))


@pytest.mark.parametrize("impl", ["unet", "step"])
def test_stochastic_ddim_uneven_n_equals_reference(sampler: Sampler, model: torch.nn.Module, impl: str) -> None:
    """eta > 0 fed the same step noise; n = 7 does not divide T (clamped last step)."""
    noise, step_noise = _noise((2, 3, 16, 16), seed=4), _noise((500, 2, 3, 16, 16), seed=5)
    expected, _ = sample_ddim(model, torch.from_numpy(noise), torch.from_numpy(CONTEXT[:2]), n=7, eta=0.5,
                              step_noise=torch.from_numpy(step_noise), guidance=1.0)
    got, kept = sampler.ddim(CONTEXT[:2], n=7, eta=0.5, noise=noise, step_noise=step_noise, guidance=1.0,
                             save_rate=1, impl=impl)
    assert np.abs(got - expected.numpy()).max() <= SAMPLE_ATOL
    assert kept.shape == (len(ddim_pairs(500, 7)), 2, 3, 16, 16)


@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_implementations_agree(sampler: Sampler, guidance: float) -> None:
    noise = _noise((3, 3, 16, 16), seed=6)
    results = {impl: sampler.ddim(CONTEXT, noise=noise, guidance=guidance, impl=impl) for impl in IMPLS}
    for impl in ("unet", "loop"):
        assert np.abs(results[impl] - results["step"]).max() <= IMPL_ATOL, impl


def test_implementations_agree_on_seeded_draws(sampler: Sampler) -> None:
    """Same seed, same draws, whichever implementation consumes them (stochastic DDIM)."""
    a = sampler.ddim(["hero", "spell"], n=20, eta=1.0, seed=11, impl="unet")
    b = sampler.ddim(["hero", "spell"], n=20, eta=1.0, seed=11, impl="step")
    assert np.abs(a - b).max() <= IMPL_ATOL


@pytest.mark.parametrize("call", ["ddpm", "ddim_eta"])
def test_same_seed_gives_identical_bytes(sampler: Sampler, call: str) -> None:
    def run(seed: int) -> np.ndarray:
        if call == "ddpm":
            return sampler.ddpm({"hero": 1, "food": 0.6}, seed=seed)
        return sampler.ddim(["food", {"hero": 1, "food": 0.6}], n=10, eta=1.0, seed=seed)

    first, again, other = run(7), run(7), run(8)
    assert first.tobytes() == again.tobytes()
    assert np.abs(first - other).max() > 0.1  # a different seed really draws differently


def test_seeded_noise_can_be_shared_between_samplers(sampler: Sampler) -> None:
    """Sampler.noise(B, seed) is the x_T a seeded call draws; injecting it changes nothing."""
    x_T = sampler.noise(2, seed=5)
    assert sampler.ddim(["hero", "food"], n=10, eta=1.0, noise=x_T, seed=5).tobytes() == \
        sampler.ddim(["hero", "food"], n=10, eta=1.0, seed=5).tobytes()


def test_context_forms_are_equivalent(sampler: Sampler) -> None:
    noise = _noise((3, 3, 16, 16), seed=9)
    by_array = sampler.ddim(CONTEXT, n=5, noise=noise)
    by_names = sampler.ddim(["hero", {"food": 1, "spell": 0.6}, None], n=5, noise=noise)
    assert by_array.tobytes() == by_names.tobytes()
    unconditional = sampler.ddim(None, n=5, noise=noise)
    assert unconditional.tobytes() == sampler.ddim(np.zeros((3, 5), np.float32), n=5, noise=noise).tobytes()


def test_output_range_and_intermediates(sampler: Sampler) -> None:
    sprites, kept = sampler.ddpm("hero", seed=1, save_rate=100)
    assert sprites.shape == (1, 3, 16, 16) and sprites.dtype == np.float32
    assert sprites.min() >= -1 and sprites.max() <= 1
    assert kept.shape[0] == sum(ddpm_keeps(i, 500, 100) for i in range(500, 0, -1))
    sprites, kept = sampler.ddim("hero", n=10, seed=1, save_rate=3)
    assert kept.shape[0] == 4  # after steps 3, 6, 9 and the last (10)
    assert np.array_equal(np.clip(kept[-1], -1, 1), sprites)


def test_concurrent_calls_match_solo_calls(sampler: Sampler) -> None:
    """One Sampler, 4 threads, mixed batch sizes and samplers: each gets its solo result."""
    jobs = [(lambda s=s: sampler.ddim(["hero"] * (1 + s % 2), n=8, seed=s, guidance=s % 2, impl=IMPLS[s % 2]))
            for s in range(4)]
    solo = [job() for job in jobs]
    results = run_in_threads(jobs)
    for k, expected in enumerate(solo):
        assert results[k].tobytes() == expected.tobytes(), k


def test_load_reads_the_manifest(sampler: Sampler) -> None:
    assert sampler.class_names == ("hero", "non-hero", "food", "spell", "side-facing")
    assert sampler.timesteps == 500 and sampler.image_shape == (3, 16, 16)
    assert sampler.provider == "cpu"


@pytest.mark.parametrize("impl", IMPLS)
def test_load_builds_only_the_default_ddim_graph(export_dir: Path, impl: str) -> None:
    """Cold start: load builds one session (the impl's DDIM graph), the rest on first use;
    open_all builds every graph of the export at load."""
    lazy = Sampler.load(export_dir, provider="cpu", impl=impl)
    assert lazy.open_graphs == ({"unet": "unet", "step": "ddim_step", "loop": "ddim_loop"}[impl],)
    if impl != "loop":
        lazy.ddpm("hero", seed=0)
        assert set(lazy.open_graphs) == ({"unet"} if impl == "unet" else {"ddim_step", "ddpm_step"})
    everything = Sampler.load(export_dir, provider="cpu", impl=impl, open_all=True)
    assert set(everything.open_graphs) == {"unet", "ddpm_step", "ddim_step", "solver_step", "ddim_loop"}


def test_threads_first_using_an_unopened_graph_get_solo_results(export_dir: Path) -> None:
    """Threads that first need the same unopened graph at the same moment share the one
    session built for it and each still gets its solo result."""
    fresh = Sampler.load(export_dir, provider="cpu")
    jobs = [(lambda s=s: fresh.ddim(["food"] * (1 + s % 2), n=3, seed=s, impl="unet")) for s in range(4)]
    results = run_in_threads(jobs, rounds=1)
    assert set(fresh.open_graphs) == {"ddim_step", "unet"}
    for k, job in enumerate(jobs):
        assert results[k].tobytes() == job().tobytes(), k


# ------------------------------------------------------------------ defaults and resources
def test_ddim_default_steps_come_from_the_contract_and_the_loop_graph(export_dir: Path, tmp_path: Path) -> None:
    """n=None: contract.DDIM_DEFAULT_STEPS, except impl="loop", which defaults to the loop graph's
    own ddim_loop_steps (here rewritten to 5 in the graph and the manifest: a loop default of
    25 would be refused as 'n=5 only')."""
    import onnx

    from spritegen.contract import DDIM_DEFAULT_STEPS, MANIFEST_FILE, GraphMeta
    from spritegen.files import sha256_file

    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    directory = link_export(export_dir, tmp_path / "export", manifest)
    loop = directory / "ddim_loop.onnx"
    graph = onnx.load_model(str(loop))
    for prop in graph.metadata_props:
        if prop.key == GraphMeta.LOOP_STEPS:
            prop.value = "5"
    loop.unlink()  # a link into the shared export
    onnx.save_model(graph, str(loop))
    manifest.update(ddim_loop_steps=5)
    manifest["files"]["ddim_loop.onnx"] = {"sha256": sha256_file(loop), "bytes": loop.stat().st_size}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))

    sampler = Sampler.load(directory, provider="cpu")
    assert sampler.check_ddim() == DDIM_DEFAULT_STEPS and sampler.check_ddim(impl="loop") == 5
    assert sampler.ddim("hero", seed=0, impl="loop").shape == (1, *sampler.image_shape)
    assert np.array_equal(sampler.ddim("hero", seed=1, impl="unet"),
                          sampler.ddim("hero", seed=1, impl="unet", n=DDIM_DEFAULT_STEPS))
    with pytest.raises(InputError, match="n=5 only"):
        sampler.ddim("hero", seed=0, impl="loop", n=DDIM_DEFAULT_STEPS)


def test_runner_pool_is_bounded_per_shape_and_overall() -> None:
    """Idle workspaces: at most per_key of one shape, at most total overall, least recently
    returned shapes dropped first (a runner stands in for a workspace: the pool only stores it)."""
    built = []
    pool = RunnerPool(lambda *key: built.append(key) or object(), per_key=2, total=3)
    with pool.checkout(("a",)), pool.checkout(("a",)), pool.checkout(("a",)):
        pass  # three concurrent calls of one shape: three runners
    assert len(built) == 3 and pool.idle() == 2 and pool.shapes() == [("a",)]
    for key in (("b",), ("c",)):
        with pool.checkout(key):
            pass
    assert pool.idle() == 3 and pool.shapes() == [("a",), ("b",), ("c",)]  # one "a" dropped
    with pool.checkout(("a",)):
        pass  # reused, not rebuilt
    assert len(built) == 5 and pool.shapes() == [("b",), ("c",), ("a",)]
    with pool.checkout(("d",)):
        pass
    assert pool.idle() == 3 and pool.shapes() == [("c",), ("a",), ("d",)]  # "b", least recent, dropped


def test_sampler_keeps_a_bounded_number_of_workspaces(export_dir: Path) -> None:
    sampler = Sampler.load(export_dir, provider="cpu", impl="unet")
    batches = range(1, limits.MAX_IDLE_RUNNERS + 4)
    for batch in batches:
        sampler.ddim(["hero"] * batch, n=1, seed=0)
    shapes = sampler._pool.shapes()
    assert sampler._pool.idle() == limits.MAX_IDLE_RUNNERS == len(shapes)
    assert [key[2] for key in shapes] == list(batches)[-limits.MAX_IDLE_RUNNERS:]  # the newest kept


def test_spin_is_decided_by_the_machine_unless_forced(export_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """spin=None: spin only with >= 2 cores and a quiet machine (the OS's load average, which a
    test cannot set, is replaced); True/False force it."""
    from spritegen.runtime import session

    cores = session.default_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert session.auto_spin() is (cores >= session.SPIN_MIN_CORES) and session.auto_spin(threads=1) is False
    assert Sampler.load(export_dir, provider="cpu").spin is session.auto_spin()
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1), 0.0, 0.0))  # one busy task per core
    assert session.auto_spin() is False and Sampler.load(export_dir, provider="cpu").spin is False
    assert Sampler.load(export_dir, provider="cpu", spin=True).spin is True
