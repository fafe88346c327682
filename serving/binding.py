"""The PyTriton binding: one inference callable per sampler over a shared `Sampler`.

Triton's dynamic batcher hands the callable the requests queued together. Each request
is parsed alone (serving.requests), the valid ones are sampled together
(serving.batching), and the answer is one response per request:

- every request valid: sprites for all;
- every request refused (a lone bad request, the usual case): the callable raises, so
  Triton answers each with an error status (HTTP 500 / gRPC INTERNAL) whose message
  ends with `BadRequest: <the one-line reason>`;
- a mix: PyTriton 0.7.0 answers one batch with one status, so raising would fail the
  valid requests too. The valid ones get their sprites; each refused one gets a
  response whose `error` output holds its reason and no sprite. spritegen.client raises
  `InputError` with that line either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from spritegen.errors import SpriteGenError
from spritegen.runtime import Sampler
from spritegen.serving import batching, requests
from spritegen.serving.schema import Schema

LOG = logging.getLogger("spritegen.serving")


class BadRequest(Exception):
    """A refused batch; its message is the reason(s). The traceback is hidden, so the
    error Triton sends carries `BadRequest: <reason>` and not our stack frames."""

    # PyTriton formats the error it sends with traceback.format_exception(e, e.__traceback__):
    # this data descriptor answers None there, while the interpreter's own bookkeeping
    # (which bypasses it) keeps working.
    __traceback__ = property(lambda self: None, lambda self, value: None)  # type: ignore[assignment]


def make_infer(sampler: Sampler, kind: str, schema: Schema, max_batch: int) -> Callable[[Sequence[Mapping]], list]:
    """The callable PyTriton binds for model `kind` ("ddim" or "ddpm")."""
    names = tuple(sampler.class_names)

    def infer(batch: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        parsed: list[list[requests.Row] | str] = []
        for request in batch:
            try:
                parsed.append(requests.parse(request, kind, schema, names))
            except SpriteGenError as exc:
                parsed.append(_one_line(exc))
        refused = [p for p in parsed if isinstance(p, str)]
        if len(refused) == len(parsed):
            raise BadRequest(refused[0] if len(set(refused)) == 1 else
                             "; ".join(f"request {i + 1}: {reason}" for i, reason in enumerate(refused)))
        rows = [row for p in parsed if not isinstance(p, str) for row in p]
        sprites = iter(batching.sample_rows(sampler, rows, max_batch))
        responses = []
        for request, p in zip(batch, parsed):
            if isinstance(p, str):
                LOG.info("refused a request batched with valid ones: %s", p)
                responses.append(_refusal(schema, request, p))
            else:
                responses.append(_outputs([next(sprites) for _ in p]))
        return responses

    return infer


def _one_line(exc: SpriteGenError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _outputs(sprites: list[batching.Sprite]) -> dict[str, np.ndarray]:
    return {
        "sprite": np.stack([s.sprite for s in sprites]),
        "pixels": np.stack([s.pixels for s in sprites]),
        "used_seed": np.array([[s.seed] for s in sprites], dtype=np.uint64),
        "error": np.array([[b""] for _ in sprites], dtype=object),
    }


def _refusal(schema: Schema, request: Mapping[str, np.ndarray], reason: str) -> dict[str, np.ndarray]:
    """A refused request's response in a mixed batch: zero rows of every output (the shapes
    Triton expects) and its reason in `error`, which marks them as no answer."""
    rows = max(1, min((int(a.shape[0]) for a in request.values() if getattr(a, "ndim", 0)), default=1))
    outputs = {f.name: np.zeros((rows, *f.shape), dtype=f.dtype) for f in schema.outputs if not f.is_bytes}
    return {**outputs, "error": np.array([[reason.encode()]] * rows, dtype=object)}


class QuietRefusals(logging.Filter):
    """PyTriton logs every failed batch as a warning with its traceback; a refused request
    is the client's mistake, logged by us in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "BadRequest: " in text:
            LOG.info("refused: %s", text.rsplit("BadRequest: ", 1)[1].strip().splitlines()[0])
            return False
        return True
