"""`spritegen.client`: sprites from a running `spritegen serve`, over Triton's HTTP or gRPC.

    from spritegen.client import Client
    with Client("127.0.0.1:8000") as client:                  # "grpc://127.0.0.1:8001" for gRPC
        result = client.ddim(["hero", "food"], seed=[1, 2])  # result.sprites (2, 3, 16, 16) float32
        result.pixels                                        # (2, 16, 16, 3) uint8
        client.fast(["hero"], seed=1)                         # also ddpm, dpmpp: the runtime's samplers

Built on tritonclient's codecs (numpy, no torch, no onnxruntime). The client asks the
server what it serves (classes, image, T, samplers, their defaults, the fitted sampler's
call counts: the models' published
config, serving.schema.published) before its first request and checks every answer
against that. A call sends one request per sprite, all at once, so the server's dynamic
batcher can merge them with each other and with other clients' requests; `timeout_s`
bounds the whole call, reading the answers included (spritegen.client_http). Seeds mean what they mean in-process: a list gives row
r the sprite of `Sampler.<sampler>([context[r]], seed=seed[r])`; one integer for B sprites
gives `Sampler.<sampler>(context, seed=seed)` (the client then draws the batch's noise with
the runtime's portable generator and sends it, which needs `spritegen[runtime]`). Errors are spritegen's: a refused request
raises `InputError` with the server's one line, an overloaded server `ServerBusy`,
anything else (unreachable, too slow, an answer that does not fit the schema) `ServerError`.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import urlparse

import numpy as np

from spritegen.client_http import Http, HttpError, Timeout
from spritegen.contract import NOISE
from spritegen.errors import InputError, SpriteGenError, first_line, shown
from spritegen.serving.schema import (FITTED, MODELS, PUBLISHED, SAMPLERS, SEED_DTYPE, UNCONDITIONAL, Published,
                                      Schema, model_name, read_published)

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
                 published: Published | None = None) -> None:
        parsed = _parse_url(url)
        self.url, self.protocol = url, parsed.scheme
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 86400:
            raise InputError(f"timeout_s must be a number of seconds in (0, 86400], got {shown(timeout_s)}")
        self.timeout_s = float(timeout_s)
        self._published = published  # None: asked from the server on first use
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, min(int(concurrency), 256)))
        if self.protocol == "http":
            self._http = Http(str(parsed.hostname), int(parsed.port))
        else:
            import tritonclient.grpc as triton
            self._grpc = triton.InferenceServerClient(f"{parsed.hostname}:{parsed.port}")
            self._triton = triton

    @property
    def published(self) -> Published:
        """What the server serves (asked once): classes, image, T, defaults, samplers."""
        if self._published is None:
            model = MODELS[SAMPLERS[0]]
            try:
                if self.protocol == "http":
                    config = self._http.get_json(f"/v2/models/{model}/config", self._deadline())
                else:
                    config = self._grpc.get_model_config(model, as_json=True, client_timeout=self.timeout_s)["config"]
            except Exception as exc:
                raise self._error(exc) from None
            try:
                self._published = read_published(config["parameters"][PUBLISHED]["string_value"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ServerError(f"the service at {self.url} does not say what it serves ({first_line(exc)}); "
                                  "is it a current `spritegen serve`?") from None
        return self._published

    @property
    def schema(self) -> Schema:
        return self.published.schema

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.published.class_names

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.protocol == "grpc":
            self._grpc.close()

    def ready(self) -> bool:
        """Whether the server answers and its models are loaded."""
        try:
            if self.protocol == "http":
                self._http.get_json("/v2/health/ready", self._deadline())
                return True
            return bool(self._grpc.is_server_ready(client_timeout=self.timeout_s))
        except Exception:  # refused connection, timeout, an error status: not ready
            return False

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_s

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

    def dpmpp(self, context: Context, *, n: int | None = None, eta: float | None = None,
              guidance: float | None = None, seed: Seeds = None, noise: np.ndarray | None = None,
              step_noise: np.ndarray | None = None) -> Sprites:
        """DPM-Solver++ 2M sprites (n network calls; eta 1: its SDE form), one per context row."""
        return self.sample("dpmpp", context, seed=seed, noise=noise, step_noise=step_noise,
                           n=n, eta=eta, guidance=guidance)

    def fast(self, context: Context, *, n: int | None = None, guidance: float | None = None, seed: Seeds = None,
             noise: np.ndarray | None = None, step_noise: np.ndarray | None = None) -> Sprites:
        """Sprites of the export's fitted few-step sampler (n: a fitted call count, default the
        export's), one per context row; refused when the service's export has none."""
        return self.sample("fast", context, seed=seed, noise=noise, step_noise=step_noise, n=n, guidance=guidance)

    def sample(self, kind: str, context: Context, *, seed: Seeds = None, noise: np.ndarray | None = None,
               step_noise: np.ndarray | None = None, **params: float | int | None) -> Sprites:
        """Sprites from sampler `kind` (a name in what the server publishes): one request per row,
        sent concurrently. step_noise is (T, B, C, H, W) as in-process (index i-1: the step starting at i)."""
        self._check_sampler(kind, params)
        rows = self.rows(context)
        batch = len(next(iter(rows.values())))
        if seed is not None:
            rows["seed"] = _seeds(seed, batch)
        for name, value in params.items():
            if value is not None:
                dtype = self.schema.input(name).dtype
                rows[name] = np.full((batch, 1), _number(value, name, integer=np.issubdtype(dtype, np.integer)), dtype)
        if _is_int(seed) and batch > 1 and (noise is None or self._stochastic(kind, params) and step_noise is None):
            noise, step_noise = self._batch_noise(kind, int(seed), batch, noise, step_noise, params)
        for name, array in (("noise", noise), ("step_noise", step_noise)):
            if array is not None:
                rows[name] = np.ascontiguousarray(array if name == "noise" else np.moveaxis(array, 1, 0))
        answers = self.infer_many(kind, [{k: v[r:r + 1] for k, v in rows.items()} for r in range(batch)])
        return Sprites(sprites=np.concatenate([a["sprite"] for a in answers]),
                       pixels=np.concatenate([a["pixels"] for a in answers]),
                       seeds=np.concatenate([a["used_seed"][:, 0] for a in answers]))

    def not_served(self, kind: str) -> str:
        """The line refusing sampler `kind` at this service."""
        why = (": its export has no fitted few-step sampler (spritegen-export --fit fits one)"
               if kind == FITTED else "")
        return (f"sampler {shown(kind)} is not served at {self.url}{why}; it serves "
                f"{', '.join(self.published.samplers)}")

    def _check_sampler(self, kind: str, params: Mapping[str, Any]) -> None:
        served = self.published.samplers
        if kind not in served:
            raise InputError(self.not_served(kind))
        extra = [name for name, value in params.items() if value is not None and name not in (*served[kind], "guidance")]
        if extra:
            raise InputError(f"the {kind} sampler takes no {extra[0]}; it takes {', '.join((*served[kind], 'guidance'))}")

    def _arg(self, kind: str, params: Mapping[str, Any], name: str) -> Any:
        """Argument `name` of a call: as given, else the server's default for `kind`."""
        value = params.get(name)
        return self.published.defaults[kind].get(name) if value is None else value

    def _stochastic(self, kind: str, params: Mapping[str, Any]) -> bool:
        if kind == FITTED:
            return bool((self.published.fast or {}).get("eta"))
        return kind == "ddpm" or bool(self._arg(kind, params, "eta"))

    def _noisy_steps(self, kind: str, params: Mapping[str, Any]) -> list[int]:
        """The step indices whose noise a stochastic `kind` call draws (runtime.plan, runtime.solver)."""
        from spritegen.contract import ddim_pairs, dpmpp_indices

        timesteps = self.schema.timesteps
        if kind == "ddpm":
            return list(range(2, timesteps + 1))
        n = int(self._arg(kind, params, "n"))
        if not 1 <= n <= timesteps or kind == FITTED and self.published.indices(kind, n) is None:
            return []  # nothing to draw: the server refuses this n with its own line
        if kind == "ddim":
            return [i for i, _ in ddim_pairs(timesteps, n)]
        indices = self.published.indices(kind, n) if kind == FITTED else dpmpp_indices(timesteps, n)
        return [i for i, after in zip(indices, indices[1:]) if after > 0]  # the last step adds no noise

    def _batch_noise(self, kind: str, seed: int, batch: int, noise: np.ndarray | None,
                     step_noise: np.ndarray | None, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """What in-process `<kind>(context, seed=seed)` draws for a batch with ONE seed (the
        whole batch as one array per stream, docs/noise.md section 4), so a batch sent as one
        request per row still gets exactly the local sprites. Needs the runtime's noise generator."""
        from spritegen.runtime.noise import draw

        shape, size = (batch, *self.schema.image), batch * int(np.prod(self.schema.image))
        if noise is None:
            noise = draw((seed,), (NOISE.x_t_stream,), size).reshape(shape)
        if step_noise is None and self._stochastic(kind, params):
            steps = self._noisy_steps(kind, params)
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
        """Send all `requests` at once, wait for all (one deadline); raise the first failure's error."""
        self._check_sampler(kind, {})
        deadline = self._deadline()
        pending = [self._pool.submit(self._call, model_name(kind), request, deadline) for request in requests]
        results, failure = [], None
        for future, request in zip(pending, requests):
            try:
                results.append(self._outputs(future.result(), len(next(iter(request.values())))))
            except SpriteGenError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return results

    def _call(self, model: str, inputs: Mapping[str, np.ndarray], deadline: float) -> Any:
        """One request, answered before `deadline` or a spritegen error."""
        from tritonclient.utils import np_to_triton_dtype

        triton = self._triton if self.protocol == "grpc" else _http_codec()
        tensors = []
        for name, array in inputs.items():
            tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        outputs = [triton.InferRequestedOutput(f.name) for f in self.schema.outputs]
        try:
            if self.protocol == "http":
                return self._http.infer(model, tensors, outputs, deadline)
            left = deadline - time.monotonic()
            return self._grpc.infer(model, tensors, outputs=outputs, client_timeout=left, timeout=int(left * 1e6))
        except Exception as exc:
            raise self._error(exc) from None

    def _outputs(self, result: Any, rows: int) -> dict[str, np.ndarray]:
        """The answer's outputs, checked against the published schema (ServerError if off)."""
        answer = {}
        for field in self.schema.outputs:
            array = result.as_numpy(field.name)
            want = (rows, *field.shape)
            if array is None or array.shape != want or (not field.is_bytes and array.dtype != field.dtype):
                got = "nothing" if array is None else f"{array.dtype} {array.shape}"
                raise ServerError(f"the service at {self.url} answered {field.name} as {got}, not {field.dtype} "
                                  f"{want}; it does not serve what it publishes")
            answer[field.name] = array
        errors = [e.decode() if isinstance(e, bytes) else str(e) for e in answer["error"].ravel() if e]
        if errors:
            raise InputError(errors[0])
        return answer

    def _error(self, exc: Exception) -> SpriteGenError:
        """A transport failure -> spritegen's error, with one line (module doc)."""
        if isinstance(exc, SpriteGenError):
            return exc
        if isinstance(exc, Timeout):
            return ServerError(f"the spritegen service at {self.url} did not answer within {self.timeout_s:g} s; "
                               "retry later or raise timeout_s")
        message = (exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)) or ""
        status = exc.status if isinstance(exc, HttpError) else (str(exc.status()) if hasattr(exc, "status") and
                                                                callable(exc.status) else "")
        first = " ".join((message.strip().splitlines() or [type(exc).__name__])[0].split())[:300]
        if "maximum queue size" in message or status in (503, "StatusCode.UNAVAILABLE") and "queue" in message:
            return ServerBusy(f"the spritegen service at {self.url} is overloaded ({first}); retry later")
        if status == "StatusCode.DEADLINE_EXCEEDED" or "timeout" in message.lower() and status in (0, ""):
            return ServerError(f"the spritegen service at {self.url} did not answer within {self.timeout_s:g} s; "
                               "retry later or raise timeout_s")
        if status in (400, 413, "StatusCode.INVALID_ARGUMENT"):
            return InputError(f"the service refused the request: {first}")
        if isinstance(exc, OSError) or status == "StatusCode.UNAVAILABLE":
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


def _http_codec() -> Any:
    import tritonclient.http

    return tritonclient.http


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
