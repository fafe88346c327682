"""`spritegen serve` against the real server: Triton (via PyTriton) started on 127.0.0.1 by
these tests, driven through spritegen.client over HTTP and gRPC, stopped by them.

One module server answers most tests (startup costs seconds); the overload and SIGTERM
tests share a second one started with a one-request queue, which the SIGTERM test stops.
No test depends on the machine's speed: waits poll a state the server reports (readiness,
its /metrics, its log), with bounds only against hangs.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spritegen.client import Client, ServerBusy
from spritegen.errors import InputError
from spritegen.runtime import Sampler
from tests.serving_support import (STARTED_BOUND_S, Server, counted, counters, holding, one, ours, post, running_server,
                                   wait_in_flight, wait_queued)
from tests.tolerances import BATCHING_ATOL

MAX_BATCH = 8
CLASSES = ("hero", "non-hero", "food", "spell", "side-facing")


@pytest.fixture(scope="module")
def served(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # 50 ms of queue delay: requests sent together are reliably merged into one batch
    with running_server(export_dir, tmp_path_factory.mktemp("serve"), "--max-batch-size", str(MAX_BATCH),
                        "--queue-delay-us", "50000") as server:
        yield server


@pytest.fixture(scope="module")
def client(served: Server) -> Iterator[Client]:
    with Client(served.url) as c:
        yield c


# ------------------------------------------------------------------ batching
def test_batching_does_not_change_answers(served: Server, sampler: Sampler) -> None:
    """8 single-sprite requests queued behind a long one (the service reports them queued)
    run as one execution, and each sprite equals in-process Sampler.ddim([context], seed=s)."""
    seeds = [11, 12, 13, 14, 15, 16, 17, 18]
    contexts = [CLASSES[k % 5] for k in range(8)]
    before = counters(served)
    with holding(served) as pool:
        futures = [pool.submit(one, served, contexts[k], seeds[k]) for k in range(8)]
        wait_queued(served, 8)
    answers = [f.result() for f in futures]
    after = counted(served, before, success=9, executions=2)
    assert after["success"] - before["success"] == 9
    assert after["executions"] - before["executions"] == 2  # the long one, then all 8 in one call
    worst = 0.0
    for ctx, seed, answer in zip(contexts, seeds, answers):
        local = sampler.ddim([ctx], seed=seed)
        worst = max(worst, float(np.abs(answer.sprites - local).max()))
        assert answer.seeds.tolist() == [seed]
    print(f"served vs in-process batch-1, 8 merged requests: max abs diff {worst:.2e}")
    assert worst <= BATCHING_ATOL


def test_different_parameters_are_not_merged(served: Server, sampler: Sampler) -> None:
    """Concurrent requests with different n / guidance each get their own parameters' sprite."""
    cases = [dict(n=5), dict(n=10), dict(n=5, guidance=2.0), dict(n=10, guidance=0.5)]
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(lambda p: one(served, "food", 3, **p), cases))
    for params, answer in zip(cases, answers):
        assert np.abs(answer.sprites - sampler.ddim(["food"], seed=3, **params)).max() <= BATCHING_ATOL


def test_few_step_samplers_equal_in_process(client: Client, sampler: Sampler) -> None:
    """dpmpp (eta 0 and 1) and fast (its default n and another fitted one): per-row seeds give the
    in-process batch-1 sprite; one seed for a batch gives the in-process batch (the client draws
    the solver's step noise as the runtime does)."""
    contexts, worst = ["hero", {"food": 1, "spell": 0.5}, None], 0.0
    for kind, params in (("dpmpp", {}), ("dpmpp", dict(n=6, eta=1.0)), ("fast", {}), ("fast", dict(n=4))):
        served = getattr(client, kind)(contexts, seed=[3, 4, 5], **params).sprites
        local = np.concatenate([getattr(sampler, kind)([c], seed=s, **params) for c, s in zip(contexts, [3, 4, 5])])
        batch = getattr(client, kind)(contexts, seed=21, **params).sprites
        for error in (np.abs(served - local).max(), np.abs(batch - getattr(sampler, kind)(contexts, seed=21, **params)).max()):
            assert error <= BATCHING_ATOL, (kind, params, error)
            worst = max(worst, float(error))
    print(f"dpmpp and fast served vs in-process: max abs diff {worst:.2e}")


def test_few_step_requests_with_different_arguments_are_not_merged(served: Server, sampler: Sampler) -> None:
    """dpmpp requests of three (n, eta) sets queued behind a long dpmpp one run as one execution, each
    with its own arguments' sprite; a fast request meanwhile runs on its own model."""
    # every request sends n and eta: Triton's batcher merges only requests with the same inputs
    cases = [dict(n=5, eta=0.0), dict(n=5, eta=1.0), dict(n=8, eta=0.0), dict(n=5, eta=0.0), dict(n=5, eta=1.0)]
    before = counters(served, "spritegen_dpmpp")
    with holding(served, "dpmpp") as pool:
        futures = [pool.submit(one, served, "food", 30 + k, kind="dpmpp", **p) for k, p in enumerate(cases)]
        wait_queued(served, len(cases), "spritegen_dpmpp")
        fast = pool.submit(one, served, "food", 30, kind="fast").result(timeout=STARTED_BOUND_S)
    assert counted(served, before, "spritegen_dpmpp", executions=2)["executions"] - before["executions"] == 2
    for k, (params, future) in enumerate(zip(cases, futures)):
        local = sampler.dpmpp(["food"], seed=30 + k, **params)
        assert np.abs(future.result().sprites - local).max() <= BATCHING_ATOL, params
    assert np.abs(fast.sprites - sampler.fast(["food"], seed=30)).max() <= BATCHING_ATOL


def test_the_samplers_and_the_fitted_table_are_published(client: Client, sampler: Sampler) -> None:
    from spritegen.contract import DPMPP_DEFAULT_STEPS

    published, fitted = client.published, sampler.manifest.fast
    assert published.samplers == {"ddim": ("n", "eta"), "ddpm": (), "dpmpp": ("n", "eta"), "fast": ("n",)}
    assert published.defaults["dpmpp"] == {"n": DPMPP_DEFAULT_STEPS, "eta": 0.0, "guidance": 0.0}
    assert published.defaults["fast"] == {"n": fitted.default_n, "guidance": 0.0}
    assert {int(n): tuple(t) for n, t in published.fast["indices"].items()} == fitted.indices
    assert published.fast["eta"] == fitted.eta


def test_explicit_noise_and_stochastic_ddim(client: Client, sampler: Sampler) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *sampler.image_shape), dtype=np.float32)
    z = rng.standard_normal((sampler.timesteps, 2, *sampler.image_shape), dtype=np.float32)
    served = client.ddim(["hero", {"food": 1, "spell": 0.5}], n=10, eta=0.5, noise=x, step_noise=z, seed=[1, 2])
    local = sampler.ddim(["hero", {"food": 1, "spell": 0.5}], n=10, eta=0.5, noise=x, step_noise=z)
    assert np.abs(served.sprites - local).max() <= BATCHING_ATOL
    assert served.pixels.shape == (2, *sampler.image_shape[1:], 3) and served.pixels.dtype == np.uint8


def test_ddpm_over_grpc(served: Server, sampler: Sampler) -> None:
    with Client(served.grpc_url) as c:
        answer = c.ddpm([2], seed=7)
    assert np.abs(answer.sprites - sampler.ddpm(["food"], seed=7)).max() <= BATCHING_ATOL


def test_one_seed_for_a_batch_means_what_it_means_in_process(client: Client, sampler: Sampler) -> None:
    """seed=int for B sprites: the batch's noise as one array (the client draws it and sends it)."""
    contexts = ["hero", None, "spell"]
    for params in (dict(n=5), dict(n=5, eta=0.7)):
        served = client.ddim(contexts, seed=21, **params).sprites
        assert np.abs(served - sampler.ddim(contexts, seed=21, **params)).max() <= BATCHING_ATOL, params


@pytest.mark.parametrize("choice", [[], ["--sampler", "dpmpp", "--eta", "1"], ["--sampler", "ddim", "--n", "10"]],
                         ids=["default", "dpmpp", "ddim"])
def test_sample_with_server_writes_the_local_grid(served: Server, export_dir: Path, tmp_path: Path,
                                                  choice: list[str]) -> None:
    """Local and --server runs write the same grid; with no --sampler both run fast (the export's
    fitted sampler, which the service publishes)."""
    from PIL import Image
    from typer.testing import CliRunner

    from spritegen.cli import app

    common = ["sample", "--classes", "hero,food", "--num", "2", "--seed", "5", *choice]
    local = CliRunner().invoke(app, [*common, "--export-dir", str(export_dir), "--out", str(tmp_path / "local.png"),
                                     "--npy", str(tmp_path / "local.npy")])
    remote = CliRunner().invoke(app, [*common, "--server", served.url, "--out", str(tmp_path / "remote.png"),
                                      "--npy", str(tmp_path / "remote.npy")])
    assert local.exit_code == 0 and remote.exit_code == 0, (local.output, remote.output)
    assert np.abs(np.load(tmp_path / "local.npy") - np.load(tmp_path / "remote.npy")).max() <= BATCHING_ATOL
    assert np.array_equal(np.asarray(Image.open(tmp_path / "local.png")), np.asarray(Image.open(tmp_path / "remote.png")))
    chosen = choice[1] if choice else "fast"
    assert f"4 sprites, {chosen}, seed 5" in local.output and f"4 sprites, {chosen}, seed 5" in remote.output
    if not choice:
        gif = CliRunner().invoke(app, [*common, "--server", served.url, "--out", str(tmp_path / "g.png"),
                                       "--gif", str(tmp_path / "g.gif")])
        assert gif.exit_code == 1 and "--gif needs a local run" in gif.output and not (tmp_path / "g.png").exists()


def test_fresh_seed_is_reported_and_reproduces(client: Client) -> None:
    first = client.ddim(["spell"], n=5)
    again = client.ddim(["spell"], n=5, seed=int(first.seeds[0]))
    assert np.array_equal(first.sprites, again.sprites)


# ------------------------------------------------------------------ bad input
def _rows(**arrays) -> dict[str, np.ndarray]:
    base = {"class_name": np.array([[b"hero"]], dtype=object), "seed": np.array([[1]], np.uint64),
            "n": np.array([[2]], np.int64)}
    base.update(arrays)
    return {k: v for k, v in base.items() if v is not None}


F32 = np.float32
MALFORMED = [
    ("ddim", _rows(class_name=np.array([[b"dragon"]], dtype=object)), "unknown class 'dragon'"),
    ("ddim", _rows(class_name=np.array([[b"\xff\xfe"]], dtype=object)), "class_name is not UTF-8"),
    ("ddim", _rows(class_name=None, class_index=np.array([[7]], np.int64)), "class_index 7 is out of range"),
    ("ddim", _rows(class_name=None, class_index=np.array([[-1]], np.int64)), "class_index -1 is out of range"),
    ("ddim", _rows(class_name=None, context=np.array([[1, np.nan, 0, 0, 0]], F32)), "must be finite"),
    ("ddim", _rows(class_name=None, context=np.array([[1, -2, 0, 0, 0]], F32)), "must be >= 0"),
    ("ddim", _rows(class_name=None, context=np.ones((1, 4), F32)), "unexpected shape for input 'context'"),
    ("ddim", _rows(class_name=None, context=np.ones((1, 5), np.float64)), "data-type is 'FP64'"),
    ("ddim", _rows(context=np.ones((1, 5), F32)), "exactly one of context, class_name, class_index"),
    ("ddim", _rows(class_name=None), "exactly one of context, class_name, class_index"),
    ("ddim", _rows(n=np.array([[0]], np.int64)), "n must be an integer in 1..500, got 0"),
    ("ddim", _rows(n=np.array([[501]], np.int64)), "n must be an integer in 1..500, got 501"),
    ("ddim", _rows(eta=np.array([[1.5]], F32)), "eta must be a finite number in 0..1"),
    ("ddim", _rows(eta=np.array([[np.nan]], F32)), "eta must be a finite number in 0..1"),
    ("ddim", _rows(guidance=np.array([[-1]], F32)), "guidance must be a finite number in 0..100"),
    ("ddpm", _rows(n=None, guidance=np.array([[np.nan]], F32)), "guidance must be a finite number in 0..100"),
    ("ddim", _rows(noise=np.full((1, 3, 16, 16), np.inf, F32)), "noise holds NaN or Inf"),
    ("ddim", _rows(noise=np.zeros((1, 3, 8, 8), F32)), "unexpected shape for input 'noise'"),
    ("ddim", _rows(class_name=np.array([[b"hero"]] * (MAX_BATCH + 1), dtype=object),
                   seed=np.arange(MAX_BATCH + 1, dtype=np.uint64)[:, None],
                   n=np.full((MAX_BATCH + 1, 1), 2, np.int64)), f"batch-size must be <= {MAX_BATCH}"),
    ("ddim", _rows(temperature=np.ones((1, 1), F32)), "unexpected inference input 'temperature'"),
    ("ddpm", _rows(), "unexpected inference input 'n'"),
    ("ddim", _rows(seed=np.array([[1], [2]], np.uint64)), "batch"),
    ("dpmpp", _rows(n=np.array([[0]], np.int64)), "DPM-Solver++ steps n must be an integer in 1..500, got 0"),
    ("dpmpp", _rows(eta=np.array([[2.0]], F32)), "eta must be a finite number in 0..1"),
    ("fast", _rows(), "the fast sampler of this export is fitted for n in 4, 5, 6, 8, 10 network calls, got 2"),
    ("fast", _rows(n=None, eta=np.array([[1.0]], F32)), "unexpected inference input 'eta'"),
]


@pytest.mark.parametrize(("kind", "inputs", "message"), MALFORMED,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(MALFORMED)])
def test_malformed_request_is_refused_with_its_reason(client: Client, kind: str, inputs: dict,
                                                       message: str) -> None:
    with pytest.raises(InputError) as info:
        client.infer(kind, inputs)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert not any(leak in str(info.value) for leak in ("Traceback", "/tmp", "model.py")), str(info.value)
    assert client.ddim(["hero"], n=1, seed=5).sprites.shape == (1, 3, 16, 16)  # the next valid one succeeds


def test_bad_request_batched_with_good_ones_spoils_nothing(served: Server, sampler: Sampler) -> None:
    """A refused request merged with valid ones (all queued behind a long one, then one
    execution): they get their sprites, it gets its own error status (HTTP 400) and no outputs."""
    contexts = ["hero", "food", "dragon", "spell"]
    before = counters(served)
    with holding(served) as pool:
        futures = [pool.submit(one, served, ctx, 9, n=3) if ctx != "dragon" else pool.submit(_raw_json, served, ctx)
                   for ctx in contexts]
        wait_queued(served, 4)
    assert counted(served, before, executions=2)["executions"] - before["executions"] == 2  # the long one, then the four together
    for ctx, future in zip(contexts, futures):
        if ctx == "dragon":
            status, answer = future.result()
            assert status == 400 and set(answer) == {"error"}, (status, answer)
            assert answer["error"].startswith("unknown class 'dragon'")
        else:
            assert np.abs(future.result().sprites - sampler.ddim([ctx], seed=9, n=3)).max() <= BATCHING_ATOL


def _raw_json(server: Server, class_name: str) -> tuple[int, dict]:
    """One ddim request as plain KServe v2 JSON: (HTTP status, the decoded answer)."""
    body = json.dumps({"inputs": [
        {"name": "class_name", "shape": [1, 1], "datatype": "BYTES", "data": [class_name]},
        {"name": "seed", "shape": [1, 1], "datatype": "UINT64", "data": [9]},
        {"name": "n", "shape": [1, 1], "datatype": "INT64", "data": [3]}]}).encode()
    return post(server, "/v2/models/spritegen_ddim/infer", body)


def test_declared_sizes_are_refused_before_anything_is_allocated(served: Server, client: Client) -> None:
    """~100-byte requests declaring a billion rows (HTTP JSON, gRPC) and a 9 GB Content-Length
    are refused, the server's peak resident memory does not move, and it serves on."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    peak = served.peak_rss_kib()
    huge = {"inputs": [{"name": "context", "shape": [1_000_000_000, 5], "datatype": "FP32", "data": [1, 0, 0, 0, 0]}]}
    status, answer = post(served, "/v2/models/spritegen_ddim/infer", json.dumps(huge).encode())
    assert status == 400 and "batch-size must be <= 8" in answer["error"], answer
    status, answer = post(served, "/v2/models/spritegen_ddim/infer", b"{}", {"Content-Length": str(9 << 30)})
    assert status == 413 and "send fewer sprites" in answer["error"], answer
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc}") as channel:
        request = service_pb2.ModelInferRequest(model_name="spritegen_ddim")
        tensor = request.inputs.add(name="context", datatype="FP32", shape=[1_000_000_000, 5])
        request.raw_input_contents.append(np.ones(5, np.float32).tobytes())
        with pytest.raises(grpc.RpcError) as info:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=120)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "batch-size must be <= 8" in info.value.details()
        del tensor
    grown = served.peak_rss_kib() - peak
    print(f"peak RSS of the server's processes grew {grown / 1024:.1f} MiB over three billion-row requests")
    assert grown < 64 * 1024  # the JSON request alone would have made Triton allocate 20 GB
    assert client.ddim(["hero"], n=1, seed=5).sprites.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_huge_class_name_is_refused_with_a_short_line(served: Server, protocol: str) -> None:
    """A 10 MB class name: refused with a line that echoes none of it; the next request is served."""
    with Client(served.url if protocol == "http" else served.grpc_url) as c:
        with pytest.raises(InputError) as info:
            c.infer("ddim", _rows(class_name=np.array([[b"x" * 10_000_000]], dtype=object)))
        assert "class names are at most 64 characters" in str(info.value) and len(str(info.value)) < 300
        assert c.ddim(["hero"], n=1, seed=5).sprites.shape == (1, 3, 16, 16)


def test_metrics_count_successes_and_refusals(served: Server, client: Client) -> None:
    """The service's own metrics count outcomes (Triton's success counter also counts a
    refused request, which its backend answered: docs/serving.md)."""
    ok, refused, batches = ('spritegen_requests_total{model="spritegen_ddim",outcome="ok"}',
                            'spritegen_requests_total{model="spritegen_ddim",outcome="refused"}',
                            'spritegen_batch_rows_count{model="spritegen_ddim"}')
    before = ours(served)
    client.ddim(["hero"], n=1, seed=1)
    with pytest.raises(InputError):
        client.ddim(["dragon"], n=1, seed=1)
    after = ours(served)
    assert after[ok] - before.get(ok, 0) == 1 and after[refused] - before.get(refused, 0) == 1
    assert after[batches] - before.get(batches, 0) == 1  # the refused request ran no sampler


def test_soak_memory_is_stable(served: Server) -> None:
    """A bounded soak: 1,000 one-step requests from 16 clients; resident memory of the
    server's processes after a warm-up vs at the end (a longer soak: benchmarks.serve)."""
    def burst(count: int) -> int:
        with Client(served.url) as c:
            return sum(c.ddim([CLASSES[k % 5]], n=1, seed=k).sprites.shape[0] for k in range(count))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(burst, [13] * 16)) == 208  # warm-up: pools and arenas reach their size
        start = served.rss_kib()
        began = time.monotonic()
        assert sum(pool.map(burst, [50] * 16)) == 800
        seconds = time.monotonic() - began
    end = served.rss_kib()
    print(f"soak: 1008 requests, RSS after warm-up {start / 1024:.0f} MiB, at end {end / 1024:.0f} MiB, "
          f"last 800 in {seconds:.1f} s")
    assert end <= start * 1.05 + 16 * 1024


# ------------------------------------------------------------------ overload, shutdown
@pytest.fixture(scope="module")
def tiny(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(export_dir, tmp_path_factory.mktemp("tiny"), "--max-batch-size", "1",
                        "--max-queue-size", "1", "--queue-delay-us", "0", "--exit-timeout", "20") as server:
        yield server


def test_overload_is_rejected_at_once_then_serves(tiny: Server, sampler: Sampler) -> None:
    """One request computing, one queued (the queue holds one): the next is rejected at once
    (ServerBusy, counted), and the queued one is then served."""
    with holding(tiny) as pool:
        queued = pool.submit(one, tiny, "food", 4, n=5)
        wait_queued(tiny, 1)
        with pytest.raises(ServerBusy):
            one(tiny, "hero", 2, n=1)
    assert np.abs(queued.result().sprites - sampler.ddim(["food"], n=5, seed=4)).max() <= BATCHING_ATOL
    assert ours(tiny).get('spritegen_rejected_total{status="503"}', 0) >= 1  # HTTP rejections are counted


def test_a_request_past_its_deadline_in_the_queue_is_not_computed(tiny: Server) -> None:
    """B, queued behind A (which the service reports in flight) with a 10 ms deadline, is
    rejected when its turn comes, not computed: its answer is Triton's timeout error, and the
    service counts one computed request (A)."""
    ok = 'spritegen_requests_total{model="spritegen_ddim",outcome="ok"}'
    before = ours(tiny).get(ok, 0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(one, tiny, "hero", 1, n=500, guidance=1.0)  # 1,000 network calls
        wait_in_flight(tiny, first)
        body = json.dumps({"parameters": {"timeout": 10_000}, "inputs": [  # microseconds
            {"name": "class_name", "shape": [1, 1], "datatype": "BYTES", "data": ["food"]},
            {"name": "n", "shape": [1, 1], "datatype": "INT64", "data": [1]}]}).encode()
        status, answer = post(tiny, "/v2/models/spritegen_ddim/infer", body)
        assert first.result(timeout=STARTED_BOUND_S).sprites.shape == (1, 3, 16, 16)
    assert status != 200 and "timeout" in answer.get("error", "").lower(), (status, answer)
    assert ours(tiny)[ok] - before == 1


def test_sigterm_finishes_in_flight_requests_and_exits_0(tiny: Server) -> None:
    """SIGTERM once the service itself says a request is in flight (its /metrics gauge, and
    the count it prints at the signal): that request still gets its sprite, the exit is 0."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(one, tiny, "hero", 1, n=500, guidance=1.0)  # 1,000 network calls
        wait_in_flight(tiny, pending)
        tiny.process.send_signal(signal.SIGTERM)
        assert pending.result(timeout=STARTED_BOUND_S).sprites.shape == (1, 3, 16, 16)
        status = tiny.process.wait(timeout=STARTED_BOUND_S)
    said = re.findall(r"stopping: (\d+) request\(s\) in flight", tiny.log.read_text())
    print(f"SIGTERM: the service had {said} request(s) in flight, exited {status}")
    assert said and int(said[-1]) >= 1 and status == 0
