"""The PyTriton binding: one inference callable per sampler over a shared `Sampler`.

Triton's dynamic batcher hands the callable the requests queued together. Each request
is parsed alone (serving.requests), the valid ones are sampled together
(serving.batching), and every request gets its own answer (serving.pytriton_patch turns
a non-empty `error` output into that request's own error status):

- a valid request: its sprites, status 200 / OK;
- a refused request: its one-line reason as an error (HTTP 400 / gRPC INVALID_ARGUMENT)
  and no outputs at all, whether it was alone or merged with valid ones;
- a failure of ours (a bug, the runtime failing on valid input): the whole batch fails
  with one line; the traceback goes to the server's log only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from spritegen.errors import SpriteGenError
from spritegen.runtime import Sampler
from spritegen.serving import batching, requests
from spritegen.serving.metrics import METRICS
from spritegen.serving.schema import MODELS, Published

LOG = logging.getLogger("spritegen.serving")
MAX_REASON = 400  # characters of a refusal's line


class ServiceFailure(Exception):
    """A batch that failed on our side; its message is one line. The traceback is hidden, so
    the error Triton sends carries the line and not our stack frames (they are logged)."""

    # PyTriton formats the error it sends with traceback.format_exception(e, e.__traceback__):
    # this data descriptor answers None there, while the interpreter's own bookkeeping
    # (which bypasses it) keeps working.
    __traceback__ = property(lambda self: None, lambda self, value: None)  # type: ignore[assignment]


def make_infer(sampler: Sampler, kind: str, facts: Published, max_batch: int) -> Callable[[Sequence[Mapping]], list]:
    """The callable PyTriton binds for model `kind` (a name in serving.schema.SAMPLERS); `facts`:
    what the service publishes."""
    model = MODELS[kind]

    def infer(batch: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        METRICS.started(model, len(batch))
        began, outcomes, rows = time.perf_counter(), {"ok": 0, "refused": 0, "failed": 0}, []
        try:
            parsed = [_parse(request, kind, facts, sampler) for request in batch]
            rows = [row for p in parsed if not isinstance(p, str) for row in p]
            outcomes["refused"] = sum(isinstance(p, str) for p in parsed)
            try:
                sprites = iter(batching.sample_rows(sampler, rows, max_batch) if rows else [])
            except Exception as exc:  # ours, not the client's: log it whole, send one line
                LOG.exception("sampling %d rows failed", len(rows))
                raise ServiceFailure(f"the {kind} sampler failed ({type(exc).__name__}); see the server's log") from None
            outcomes["ok"] = len(batch) - outcomes["refused"]
            return [_refusal(p) if isinstance(p, str) else _outputs([next(sprites) for _ in p]) for p in parsed]
        finally:
            outcomes["failed"] = len(batch) - outcomes["ok"] - outcomes["refused"]
            METRICS.finished(model, outcomes, len(rows), time.perf_counter() - began)

    return infer


def _parse(request: Mapping[str, np.ndarray], kind: str, facts: Published,
           sampler: Sampler) -> list[requests.Row] | str:
    """The request's rows, or its refusal's line."""
    try:
        return requests.parse(request, kind, facts, sampler)
    except SpriteGenError as exc:
        LOG.info("refused: %s", _one_line(exc))
        return _one_line(exc)


def _one_line(exc: SpriteGenError) -> str:
    """The refusal's line, bounded: messages echo at most a short prefix of what was sent,
    and this caps whatever slipped through."""
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def _outputs(sprites: list[batching.Sprite]) -> dict[str, np.ndarray]:
    return {
        "sprite": np.stack([s.sprite for s in sprites]),
        "pixels": np.stack([s.pixels for s in sprites]),
        "used_seed": np.array([[s.seed] for s in sprites], dtype=np.uint64),
        "error": np.array([[b""] for _ in sprites], dtype=object),
    }


def _refusal(reason: str) -> dict[str, np.ndarray]:
    """A refused request's answer: its reason alone; the stub makes it an error status."""
    return {"error": np.array([[reason.encode()]], dtype=object)}
