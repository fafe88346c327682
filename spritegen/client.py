"""`spritegen.client`: sprites from a running `spritegen serve`, over Triton's HTTP or gRPC.

    from spritegen.client import Client
    with Client("127.0.0.1:8000") as client:                  # "grpc://127.0.0.1:8001" for gRPC
        result = client.ddim(["hero", "food"], seed=[1, 2])  # result.sprites (2, 3, 16, 16) float32
        result.pixels                                        # (2, 16, 16, 3) uint8

Built on tritonclient alone (numpy, no torch, no onnxruntime). A call sends one request
per sprite, all at once, so the server's dynamic batcher can merge them with each other
and with other clients' requests. Seeds mean what they mean in-process: a list gives row
r the sprite of `Sampler.ddim([context[r]], seed=seed[r])`; one integer for B sprites
gives `Sampler.ddim(context, seed=seed)` (the client then draws the batch's noise with
the runtime's portable generator and sends it, which needs `spritegen[runtime]`). Errors are spritegen's: a refused request
raises `InputError` with the server's one line (whether Triton answered with an error
status or, inside a mixed batch, with the `error` output), an overloaded server
`ServerBusy`, anything else `ServerError`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import urlparse

import numpy as np

from spritegen.contract import CLASS_NAMES, NOISE, ModelConfig, ScheduleConfig
from spritegen.errors import InputError, SpriteGenError, shown
from spritegen.serving.schema import DEFAULTS, MODELS, SEED_DTYPE, UNCONDITIONAL, Schema, schema

Context = Union[None, str, int, Mapping[str, float], Sequence[Any], np.ndarray]
Seeds = Union[None, int, Sequence[int]]


class ServerError(SpriteGenError):
    """The service could not be reached or failed on a valid request."""


class ServerBusy(ServerError):
    """The service's queue is full (HTTP 503 / gRPC UNAVAILABLE): retry later or add replicas."""


@dataclass(frozen=True)
class Sprites:
    sprites: np.ndarray  # (B, C, H, W) float32 in [-1, 1]
    pixels: np.ndarray  # (B, H, W, 3) uint8
    seeds: np.ndarray  # (B,) uint64: the seed each row was drawn with


class Client:
    """A spritegen service at `url`: "host:port" or "http://host:port" (HTTP), "grpc://host:port"."""

    def __init__(self, url: str, *, timeout_s: float = 120.0, concurrency: int = 32,
                 model: ModelConfig = ModelConfig(), timesteps: int = ScheduleConfig.timesteps,
                 class_names: Sequence[str] = CLASS_NAMES) -> None:
        parsed = _parse_url(url)
        self.url, self.protocol, self.timeout_s = url, parsed.scheme, timeout_s
        self.class_names = tuple(class_names)
        self.schema: Schema = schema(model, timesteps)
        address = f"{parsed.hostname}:{parsed.port}"
        if self.protocol == "http":
            import tritonclient.http as triton
            self._client = triton.InferenceServerClient(address, concurrency=concurrency,
                                                        connection_timeout=timeout_s, network_timeout=timeout_s)
            _quiet_greenlets()
        else:
            import tritonclient.grpc as triton
            self._client = triton.InferenceServerClient(address)
        self._triton = triton

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        """Whether the server answers and its models are loaded."""
        try:
            return bool(self._client.is_server_ready())
        except Exception:  # refused connection, timeout: not ready
            return False

    # ---------------------------------------------------------------- sampling
    def ddim(self, context: Context, *, n: int | None = None, eta: float | None = None, guidance: float | None = None,
             seed: Seeds = None, noise: np.ndarray | None = None, step_noise: np.ndarray | None = None) -> Sprites:
        """DDIM sprites, one per context row (see the module doc); None parameters: the server's defaults."""
        return self.sample("ddim", context, seed=seed, noise=noise, step_noise=step_noise,
                           n=n, eta=eta, guidance=guidance)

    def ddpm(self, context: Context, *, guidance: float | None = None, seed: Seeds = None,
             noise: np.ndarray | None = None, step_noise: np.ndarray | None = None) -> Sprites:
        """DDPM sprites (T steps), one per context row."""
        return self.sample("ddpm", context, seed=seed, noise=noise, step_noise=step_noise, guidance=guidance)

    def sample(self, kind: str, context: Context, *, seed: Seeds = None, noise: np.ndarray | None = None,
               step_noise: np.ndarray | None = None, **params: float | int | None) -> Sprites:
        """Sprites from model `kind` ("ddim"/"ddpm"): one request per row, sent concurrently.
        step_noise is (T, B, C, H, W) as in-process (index i-1: the step starting at i)."""
        rows = self.rows(context)
        batch = len(next(iter(rows.values())))
        if seed is not None:
            rows["seed"] = _seeds(seed, batch)
        if _is_int(seed) and batch > 1 and (noise is None or self._stochastic(kind, params) and step_noise is None):
            noise, step_noise = self._batch_noise(kind, int(seed), batch, noise, step_noise, params)
        for name, array in (("noise", noise), ("step_noise", step_noise)):
            if array is not None:
                rows[name] = np.ascontiguousarray(array if name == "noise" else np.moveaxis(array, 1, 0))
        for name, value in params.items():
            if value is not None:
                dtype = self.schema.input(name).dtype
                rows[name] = np.full((batch, 1), _number(value, name, integer=np.issubdtype(dtype, np.integer)), dtype)
        answers = self.infer_many(kind, [{k: v[r:r + 1] for k, v in rows.items()} for r in range(batch)])
        return Sprites(sprites=np.concatenate([a["sprite"] for a in answers]),
                       pixels=np.concatenate([a["pixels"] for a in answers]),
                       seeds=np.concatenate([a["used_seed"][:, 0] for a in answers]))

    def _stochastic(self, kind: str, params: Mapping[str, Any]) -> bool:
        return kind == "ddpm" or bool(params.get("eta"))

    def _batch_noise(self, kind: str, seed: int, batch: int, noise: np.ndarray | None,
                     step_noise: np.ndarray | None, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """What in-process `ddim/ddpm(context, seed=seed)` draws for a batch with ONE seed (the
        whole batch as one array per stream, docs/noise.md section 4), so a batch sent as one
        request per row still gets exactly the local sprites. Needs the runtime's noise generator."""
        from spritegen.contract import NOISE, ddim_pairs
        from spritegen.runtime.noise import draw

        shape, size = (batch, *self.schema.image), batch * int(np.prod(self.schema.image))
        if noise is None:
            noise = draw((seed,), (NOISE.x_t_stream,), size).reshape(shape)
        if step_noise is None and self._stochastic(kind, params):
            steps = (range(2, self.schema.timesteps + 1) if kind == "ddpm" else
                     [i for i, _ in ddim_pairs(self.schema.timesteps, int(params.get("n") or DEFAULTS["n"]))])
            step_noise = np.zeros((self.schema.timesteps, *shape), np.float32)
            step_noise[[i - 1 for i in steps]] = draw((seed,), tuple(steps), size).reshape(len(steps), *shape)
        return noise, step_noise

    def rows(self, context: Context) -> dict[str, np.ndarray]:
        """The context input for `context`: names -> class_name, ints -> class_index, blends
        and arrays -> context rows (B, K)."""
        items = context if isinstance(context, (list, tuple)) else [context]
        if isinstance(context, np.ndarray) or (items and all(isinstance(i, (list, tuple, np.ndarray)) for i in items)):
            return {"context": _context_rows(context, self.schema.classes, self.schema.input("context").dtype)}
        if not items:
            raise InputError("no sprites asked for: give at least one context")
        if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
            return {"class_index": np.array([[i] for i in items], dtype=np.int64)}
        if all(i is None or isinstance(i, str) for i in items):
            return {"class_name": np.array([[(UNCONDITIONAL if i is None else i).encode()] for i in items], dtype=object)}
        rows = np.zeros((len(items), self.schema.classes), np.float32)  # a mix: context rows
        for row, item in zip(rows, items):
            blend = {item: 1.0} if isinstance(item, str) else {} if item is None else item
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                blend = {self.class_names[item]: 1.0} if 0 <= item < len(self.class_names) else {str(item): 1.0}
            if not isinstance(blend, Mapping):
                raise InputError(f"context item {shown(item)} is neither a class name, an index, a blend dict nor None")
            for name, weight in blend.items():
                if name not in self.class_names:
                    raise InputError(f"unknown class {name!r}; valid classes: {', '.join(self.class_names)}")
                row[self.class_names.index(name)] = _number(weight, f"the weight of {name!r}")
        return {"context": rows}

    # ---------------------------------------------------------------- transport
    def infer(self, kind: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request to model `kind`; its outputs, or the spritegen error it was refused with."""
        return self.infer_many(kind, [inputs])[0]

    def infer_many(self, kind: str, requests: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Send all `requests` at once, wait for all; raise the first failure's error."""
        if kind not in MODELS:
            raise InputError(f"unknown sampler {shown(kind)}; choose one of {', '.join(MODELS)}")
        pending = [self._submit(MODELS[kind], request) for request in requests]
        results, failure = [], None
        for handle in pending:
            try:
                results.append(self._outputs(handle()))
            except SpriteGenError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return results

    def _submit(self, model: str, inputs: Mapping[str, np.ndarray]):
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in inputs.items():
            tensor = self._triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        outputs = [self._triton.InferRequestedOutput(f.name) for f in self.schema.outputs]
        try:
            if self.protocol == "http":
                request = self._client.async_infer(model, tensors, outputs=outputs)
                return lambda: self._wait(lambda: request.get_result(timeout=self.timeout_s))
            future: concurrent.futures.Future = concurrent.futures.Future()
            self._client.async_infer(model, tensors, lambda result, error: (
                future.set_exception(error) if error is not None else future.set_result(result)),
                outputs=outputs, client_timeout=self.timeout_s)
            return lambda: self._wait(lambda: future.result(timeout=self.timeout_s + 5))
        except Exception as exc:
            raise self._error(exc) from None

    def _wait(self, get: Any) -> Any:
        try:
            return get()
        except Exception as exc:
            raise self._error(exc) from None

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        answer = {f.name: result.as_numpy(f.name) for f in self.schema.outputs}
        errors = [e.decode() if isinstance(e, bytes) else str(e) for e in answer["error"].ravel() if e]
        if errors:
            raise InputError(errors[0])
        return answer

    def _error(self, exc: Exception) -> SpriteGenError:
        """tritonclient's exception -> spritegen's, with one line (module doc)."""
        message = (exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)) or ""
        status = str(exc.status()) if hasattr(exc, "status") and callable(exc.status) else ""
        if "BadRequest: " in message:
            return InputError(message.rsplit("BadRequest: ", 1)[1].strip().splitlines()[0])
        first = " ".join((message.strip().splitlines() or [type(exc).__name__])[0].split())
        if "maximum queue size" in message or status in ("503", "StatusCode.UNAVAILABLE") and "queue" in message:
            return ServerBusy(f"the spritegen service at {self.url} is overloaded ({first}); retry later")
        if status in ("400", "StatusCode.INVALID_ARGUMENT"):
            return InputError(f"the service refused the request: {first}")
        if isinstance(exc, (ConnectionError, OSError)) or status == "StatusCode.UNAVAILABLE":
            return ServerError(f"cannot reach the spritegen service at {self.url} ({first}); is `spritegen serve` "
                               "running there?")
        return ServerError(f"the spritegen service at {self.url} failed: {first}")


def _parse_url(url: object) -> Any:
    """`url` split, or InputError: a string naming a host and a port in 1..65535, nothing after
    them (urlparse raises ValueError on a bad port or an unclosed IPv6 bracket)."""
    usage = f"server URL {shown(url)} must be host:port, http://host:port or grpc://host:port"
    if not isinstance(url, str):
        raise InputError(usage)
    try:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        port = parsed.port
    except ValueError:
        raise InputError(usage) from None
    if (parsed.scheme not in ("http", "grpc") or not parsed.hostname or not port
            or parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.params):
        raise InputError(usage)
    return parsed


def _quiet_greenlets() -> None:
    """tritonclient.http sends requests in gevent greenlets, and gevent's hub prints a full
    traceback on stderr for every greenlet that fails (a refused connection). The failure
    reaches the caller anyway, as a ServerError from the request's get_result, so this
    thread's hub stops printing them."""
    import gevent

    gevent.get_hub().exception_stream = None


def _number(value: object, name: str, integer: bool = False) -> float | int:
    """A real number (an integer when `integer`) the request can carry; its range is the
    server's to check. numpy would otherwise read the string "1" and fail on "x" with ValueError."""
    if integer and _is_int(value):
        return int(value)
    if not integer and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    raise InputError(f"{name} must be {'an integer' if integer else 'a number'}, got {shown(value)}")


def _context_rows(context: Any, classes: int, dtype: Any) -> np.ndarray:
    """Context rows (B, K) from an array or a list of rows: numbers, K per row, finite."""
    try:
        rows = np.asarray(context, dtype=dtype)
    except (TypeError, ValueError):
        raise InputError(f"context rows must be numbers, got {shown(context)}") from None
    if rows.ndim not in (1, 2) or rows.shape[-1] != classes or rows.size == 0:
        raise InputError(f"context rows must have shape (B, {classes}), got {rows.shape}")
    if not np.isfinite(rows).all():
        raise InputError("context rows hold NaN or Inf; pass finite class weights")
    return rows.reshape(-1, classes)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _seeds(seed: Seeds, batch: int) -> np.ndarray:
    values = [seed] * batch if _is_int(seed) else list(seed) if isinstance(seed, (list, tuple, np.ndarray)) else [None]
    if len(values) != batch or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not
                                   0 <= int(s) < 1 << NOISE.seed_bits for s in values):
        raise InputError(f"seed must be one integer in [0, 2^64) per sprite ({batch}), got {shown(seed)}")
    return np.array([[int(s)] for s in values], dtype=SEED_DTYPE)


class RemoteSampler:
    """What `spritegen sample --server URL` needs of a Sampler, answered by a running service:
    the same seeds give the same sprites (and so the same grid) as a local run."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.class_names = client.class_names

    def ddim(self, context: Context, *, n: int = DEFAULTS["n"], eta: float = 0.0, seed: Seeds = None,
             guidance: float | None = None, save_rate: int | None = None, progress: Any = None) -> np.ndarray:
        _no_intermediates(save_rate)
        return _done(self.client.ddim(context, n=n, eta=eta, seed=seed, guidance=guidance).sprites, progress)

    def ddpm(self, context: Context, *, seed: Seeds = None, guidance: float | None = None,
             save_rate: int | None = None, progress: Any = None) -> np.ndarray:
        _no_intermediates(save_rate)
        return _done(self.client.ddpm(context, seed=seed, guidance=guidance).sprites, progress)


def _no_intermediates(save_rate: int | None) -> None:
    if save_rate is not None:
        raise InputError("the service returns final sprites only, so --gif needs a local run: drop --server or --gif")


def _done(sprites: np.ndarray, progress: Any) -> np.ndarray:
    if progress is not None:
        progress(1, 1)
    return sprites
