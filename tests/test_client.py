"""spritegen.client without spritegen serve: URLs, contexts, seeds, an unreachable service, a
trickling one and one whose answers do not fit what it publishes (raw servers of our own on
127.0.0.1, started and stopped by the tests)."""

from __future__ import annotations


import numpy as np
import pytest

from spritegen.client import Client, ServerError
from spritegen.errors import InputError
from spritegen.serving.schema import PUBLISHED, read_published
from tests.runtime_support import ended_within
from tests.serving_support import foreign_server, free_ports, published_config, trickling_server

HANG_BOUND_S = 120  # far beyond any timeout_s below: a call still running then is hung


def offline(url: str = "127.0.0.1:1") -> Client:
    """A client that knows the course's schema without asking a server (nothing listens)."""
    return Client(url, published=read_published(published_config()["parameters"][PUBLISHED]["string_value"]))


@pytest.mark.parametrize("url", ["localhost", "ftp://h:1", "http://:80", "grpc://host", "127.0.0.1:99999",
                                 "127.0.0.1:-1", "127.0.0.1:abc", "[::1", "127.0.0.1:0", "127.0.0.1:1/path?x",
                                 "http://", "", None])
@pytest.mark.fast
def test_bad_urls_are_refused(url: object) -> None:
    with pytest.raises(InputError, match="must be host:port"):
        Client(url)


@pytest.mark.fast
def test_contexts_become_the_right_inputs() -> None:
    client = offline()
    assert client.rows(["hero", None])["class_name"].ravel().tolist() == [b"hero", b"unconditional"]
    assert client.rows([0, 4])["class_index"].ravel().tolist() == [0, 4]
    mixed = client.rows(["food", {"hero": 1, "spell": 0.5}, None])["context"]
    assert mixed.tolist() == [[0, 0, 1, 0, 0], [1, 0, 0, 0.5, 0], [0, 0, 0, 0, 0]]
    assert client.rows(np.eye(5)[:2])["context"].shape == (2, 5)
    with pytest.raises(InputError, match="unknown class 'dragon'"):
        client.rows([{"dragon": 1}, "hero"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unreachable_service_is_one_line(protocol: str) -> None:
    (port,) = free_ports(1)  # nothing listens there
    url = f"127.0.0.1:{port}" if protocol == "http" else f"grpc://127.0.0.1:{port}"
    with Client(url, timeout_s=5) as client:
        assert not client.ready()
        with pytest.raises(ServerError, match="cannot reach the spritegen service") as info:
            client.ddim(["hero"], seed=1)
    assert "\n" not in str(info.value)


def test_bad_seeds_are_refused_before_sending() -> None:
    client = offline()
    for seed in (-1, 1 << 64, [1], True):
        with pytest.raises(InputError, match="seed must be one integer"):
            client.ddim(["hero", "food"], seed=seed)


def test_unreachable_service_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """The failed request is the caller's error, not also a greenlet traceback on stderr."""
    (port,) = free_ports(1)
    with Client(f"127.0.0.1:{port}", timeout_s=5) as client, pytest.raises(ServerError):
        client.ddim(["hero"], seed=1)
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("context, kwargs, expected", [
    ([[1, 2]], {}, "context rows must have shape (B, 5)"),
    (np.zeros((2, 4)), {}, "context rows must have shape (B, 5)"),
    (np.array([["a"] * 5]), {}, "context rows must be numbers"),
    (np.full((1, 5), np.nan), {}, "NaN or Inf"),
    ([{"hero": "x"}], {}, "the weight of 'hero' must be a number"),
    ([{"hero": "1"}], {}, "the weight of 'hero' must be a number"),
    (["hero"], {"n": "x"}, "n must be an integer"),
    (["hero"], {"n": 2.5}, "n must be an integer"),
    (["hero"], {"eta": "x"}, "eta must be a number"),
])
def test_malformed_requests_are_refused_before_sending(context, kwargs: dict, expected: str) -> None:
    client = offline()
    with pytest.raises(InputError) as info:
        client.ddim(context, seed=1, **kwargs)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("published", [False, True], ids=["asking-the-schema", "sampling"])
def test_timeout_bounds_a_trickling_answer(published: bool) -> None:
    """A server that sends its 200 and then one byte at a time: timeout_s ends the call."""
    with trickling_server() as port:
        client = offline(f"127.0.0.1:{port}") if published else Client(f"127.0.0.1:{port}")
        client.timeout_s = 1.0
        error = ended_within(lambda: client.ddim(["hero"], seed=1), HANG_BOUND_S)
    assert isinstance(error, ServerError) and "did not answer within 1 s" in str(error), error


def _tensor(name: str, datatype: str, shape: list[int]) -> dict:
    size = int(np.prod(shape))
    return {"name": name, "datatype": datatype, "shape": shape, "data": [""] * size if datatype == "BYTES" else [0] * size}


GOOD = [_tensor("sprite", "FP32", [1, 3, 16, 16]), _tensor("pixels", "UINT8", [1, 16, 16, 3]),
        _tensor("used_seed", "UINT64", [1, 1]), _tensor("error", "BYTES", [1, 1])]


@pytest.mark.parametrize("outputs, expected", [
    ([_tensor("sprite", "FP32", [1, 3, 8, 8]), *GOOD[1:]], "answered sprite as float32 (1, 3, 8, 8)"),
    (GOOD[1:], "answered sprite as nothing"),
    ([GOOD[0], _tensor("pixels", "FP32", [1, 16, 16, 3]), *GOOD[2:]], "answered pixels as float32"),
    ([*GOOD[:3]], "answered error as nothing"),
])
def test_an_answer_that_does_not_fit_the_schema_is_refused(outputs: list, expected: str) -> None:
    with foreign_server(outputs) as port, Client(f"127.0.0.1:{port}", timeout_s=30) as client:
        with pytest.raises(ServerError) as info:
            client.ddim(["hero"], seed=1)
    assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_the_schema_comes_from_the_server() -> None:
    """The foreign server's well-formed answer is accepted: the client read its published schema."""
    with foreign_server(GOOD) as port, Client(f"127.0.0.1:{port}", timeout_s=30) as client:
        assert client.ddim(["hero"], seed=1).sprites.shape == (1, 3, 16, 16)
        assert client.class_names == ("hero", "non-hero", "food", "spell", "side-facing")
        assert client.published.samplers["ddim"] == ("n", "eta") and client.schema.timesteps == 500
        with pytest.raises(InputError, match="sampler 'euler' is not served"):
            client.sample("euler", ["hero"])
        with pytest.raises(InputError, match="the ddpm sampler takes no n"):
            client.sample("ddpm", ["hero"], n=5)


@pytest.mark.parametrize("server", ["down", "foreign"])
def test_sample_with_server_checks_the_batch_before_sending(server: str, tmp_path) -> None:
    """`--num 20000` is refused at once (the local --max-batch check), or a down server is
    reported at once: never 20,000 requests."""
    from typer.testing import CliRunner

    from spritegen.cli import app

    def run(port: int):
        return CliRunner().invoke(app, ["sample", "--server", f"127.0.0.1:{port}", "--num", "20000",
                                        "--out", str(tmp_path / "g.png")])

    if server == "down":
        (port,) = free_ports(1)
        result = run(port)
        assert result.exit_code == 1 and "cannot reach the spritegen service" in result.output, result.output
    else:
        with foreign_server(GOOD) as port:
            result = run(port)
        assert result.exit_code == 1 and "more than --max-batch" in result.output, result.output
    assert not (tmp_path / "g.png").exists()


# The fitted sampler of a served export, as serving.schema.fast_section publishes it (a small table of our own).
FITTED = {"solver": "dpmpp", "eta": 1.0, "default_n": 5,
          "indices": {"4": [500, 375, 250, 125, 0], "5": [500, 400, 300, 200, 100, 0]}}


def test_a_service_without_a_fitted_sampler_refuses_fast_before_sending() -> None:
    client = offline()  # publishes no fitted sampler: nothing listens, so a sent request would fail otherwise
    assert set(client.published.samplers) == {"ddim", "ddpm", "dpmpp"}
    with pytest.raises(InputError) as info:
        client.fast(["hero"], seed=1)
    assert "its export has no fitted few-step sampler" in str(info.value) and "serves ddim, ddpm, dpmpp" in str(info.value)
    with pytest.raises(InputError, match="the dpmpp sampler takes no temperature"):
        client.sample("dpmpp", ["hero"], temperature=1.0)


@pytest.mark.parametrize("fitted", [None, FITTED], ids=["unfitted", "fitted"])
def test_sample_with_server_default_and_fast_checks(fitted: dict | None, tmp_path) -> None:
    """The CLI's default sampler with --server is fast when the service publishes a fitted one,
    else ddim; --sampler fast is refused before sending: an n it was not fitted for (exit 2,
    naming the fitted ones), or a service without a fitted sampler (exit 1)."""
    from typer.testing import CliRunner

    from spritegen.cli import app

    with foreign_server(GOOD, fast=fitted) as port:
        def run(*options: str, out: str = "g.png"):
            return CliRunner().invoke(app, ["sample", "--server", f"127.0.0.1:{port}", "--classes", "hero", "--num", "1",
                                            "--seed", "3", "--out", str(tmp_path / out), *options])

        default = run(out="default.png")
        assert default.exit_code == 0 and f"1 sprites, {'fast' if fitted else 'ddim'}, seed 3" in default.output
        refused = run("--sampler", "fast", "--n", "7")
    said = " ".join(refused.output.replace("│", " ").split())  # rich's box
    if fitted:
        assert refused.exit_code == 2 and "fitted for n in 4, 5 network calls, got 7" in said, refused.output
    else:
        assert refused.exit_code == 1 and "no fitted few-step sampler" in said, refused.output
    assert not (tmp_path / "g.png").exists()


def test_one_seed_batch_noise_for_the_solvers() -> None:
    """seed=int for B sprites: the step noise the client draws for dpmpp (eta 1) and fast is on the
    solver's noisy steps (every step but the last, runtime.solver.solver_plan), for the right n."""
    client = Client("127.0.0.1:1", published=read_published(published_config(fast=FITTED)["parameters"][PUBLISHED]
                                                            ["string_value"]))
    pytest.importorskip("onnxruntime")
    from spritegen.runtime.noise import draw

    for kind, params, steps in (("dpmpp", {"n": 4, "eta": 1.0}, [500, 375, 250]), ("fast", {}, [500, 400, 300, 200])):
        x, z = client._batch_noise(kind, 9, 2, None, None, params)
        drawn = sorted(i + 1 for i in np.flatnonzero(np.abs(z).reshape(len(z), -1).max(axis=1)))
        assert drawn == sorted(steps), (kind, drawn)
        assert np.array_equal(z[steps[0] - 1], draw((9,), (steps[0],), z[0].size).reshape(z[0].shape))
    assert client._batch_noise("dpmpp", 9, 2, None, None, {"n": 4})[1] is None  # eta 0: deterministic
