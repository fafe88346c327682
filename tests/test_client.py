"""spritegen.client without a server: URLs, contexts, seeds, and an unreachable service."""

from __future__ import annotations

import numpy as np
import pytest

from spritegen.client import Client, ServerError
from spritegen.errors import InputError
from tests.serving_support import free_ports


@pytest.mark.parametrize("url", ["localhost", "ftp://h:1", "http://:80", "grpc://host", "127.0.0.1:99999",
                                 "127.0.0.1:-1", "127.0.0.1:abc", "[::1", "127.0.0.1:0", "127.0.0.1:1/path?x",
                                 "http://", "", None])
@pytest.mark.fast
def test_bad_urls_are_refused(url: object) -> None:
    with pytest.raises(InputError, match="must be host:port"):
        Client(url)


@pytest.mark.fast
def test_contexts_become_the_right_inputs() -> None:
    client = Client("127.0.0.1:1")
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
    client = Client("127.0.0.1:1")
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
    client = Client("127.0.0.1:1")
    with pytest.raises(InputError) as info:
        client.ddim(context, seed=1, **kwargs)
    assert expected in str(info.value) and "\n" not in str(info.value)
