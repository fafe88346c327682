"""The service's HTTP port: a bounded gate in front of Triton's own HTTP server.

Triton 2.x as bundled with PyTriton 0.7.0 has no input-size limit on HTTP: for a JSON
request it allocates `product(shape) x dtype size` bytes before checking the shape against
the model (a 100-byte request declaring shape [1000000000, 5] grew it to 17 GB). So Triton
listens on a loopback port only the gate knows, and the gate, before forwarding anything:

- refuses a body over `max_body` bytes (413) or without Content-Length (411), unread;
- for an inference request, reads its JSON header and refuses (400, one line) any input
  whose declared shape holds more elements than max_batch_size rows of the schema allow.

It also answers GET /metrics itself (serving.metrics). Everything else (health, metadata, model config, the rest of KServe v2) passes through
unchanged, one upstream connection per client connection. gRPC needs no gate: Triton
checks shapes against max_batch_size before allocating there (tests/test_serving.py
measures both), and gRPC bounds a message at 2 GiB.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from spritegen.errors import shown
from spritegen.serving.metrics import METRICS
from spritegen.serving.schema import Schema

HEAD_LIMIT = 64 * 1024  # bytes of a request line and headers
JSON_BYTES_PER_ELEMENT = 24  # a float32 written as JSON text: "-1.2345678e-05, " and some
IDLE_S = 300.0  # a client connection silent this long is closed
INFER_PATH = re.compile(rb"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")


@dataclass(frozen=True)
class Bounds:
    """What one request may declare: elements per input name, and bytes per body."""

    elements: Mapping[str, int]  # input name -> max elements (max_batch_size rows)
    max_body: int
    max_batch_size: int

    @classmethod
    def of(cls, io: Schema, max_batch_size: int) -> "Bounds":
        elements = {f.name: max_batch_size * math.prod(f.shape) for f in io.inputs}
        return cls(elements=elements, max_body=HEAD_LIMIT + JSON_BYTES_PER_ELEMENT * sum(elements.values()),
                   max_batch_size=max_batch_size)


def refusal(bounds: Bounds, body: bytes, header_length: int | None) -> str | None:
    """Why an inference request's JSON header must not reach Triton, or None."""
    try:
        header = json.loads(body[:header_length] if header_length is not None else body)
        inputs = header["inputs"]
        assert isinstance(inputs, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return "the request is not a KServe v2 inference request (JSON with an inputs list)"
    biggest = max(bounds.elements.values())
    for tensor in inputs:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            return f"input {shown(name)} has shape {shown(shape)}; a shape is a list of non-negative integers"
        limit = bounds.elements.get(name, biggest) if isinstance(name, str) else biggest
        if math.prod(shape) > limit:
            return (f"input {shown(name)} declares shape {shown(shape)}, more than the {limit} elements of "
                    f"{bounds.max_batch_size} rows: batch-size must be <= {bounds.max_batch_size} here")
    return None


class Gate:
    """The gate on `listener`, forwarding to Triton's HTTP at 127.0.0.1:`upstream` (a thread)."""

    def __init__(self, listener: socket.socket, upstream: int, bounds: Bounds) -> None:
        self.listener, self.upstream, self.bounds = listener, upstream, bounds
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="spritegen-http-gate", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, sock=self.listener,
                                                                   limit=HEAD_LIMIT))
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_S)
                forward, close = await self._request(head, reader, writer)
                if forward is None:
                    return
                if not forward:
                    continue  # answered here (/metrics)
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream, limit=HEAD_LIMIT)
                upstream[1].write(forward)
                await upstream[1].drain()
                if not await _relay_response(upstream[0], writer) or close:
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError,
                ValueError):
            return  # the client went away or sent garbage: nothing to answer
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()

    async def _request(self, head: bytes, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> tuple[bytes | None, bool]:
        """(bytes to forward, close after), or (None, _) after answering the client ourselves."""
        line, headers = _parse_head(head)
        if "transfer-encoding" in headers:
            return await _answer(writer, 411, "chunked bodies are not accepted; send Content-Length"), True
        length = int(headers.get("content-length", "0"))
        if length > self.bounds.max_body:
            return await _answer(writer, 413, f"body of {length} bytes is over this server's "
                                              f"{self.bounds.max_body}; send fewer sprites per request"), True
        body = await asyncio.wait_for(reader.readexactly(length), IDLE_S)
        parts = line.split(b" ")
        if len(parts) == 3 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
            text = METRICS.text().encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
                         + str(len(text)).encode() + b"\r\n\r\n" + text)
            await writer.drain()
            return b"", False
        if len(parts) == 3 and parts[0] == b"POST" and INFER_PATH.match(parts[1].split(b"?")[0]):
            header_length = headers.get("inference-header-content-length")
            why = refusal(self.bounds, body, int(header_length) if header_length is not None else None)
            if why is not None:
                return await _answer(writer, 400, why), True
        return head + body, headers.get("connection", "").lower() == "close"


def _parse_head(head: bytes) -> tuple[bytes, dict[str, str]]:
    lines = head.split(b"\r\n")
    headers = {}
    for raw in lines[1:]:
        if b":" in raw:
            name, value = raw.split(b":", 1)
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return lines[0], headers


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """Answer as Triton does ({"error": ...}) and close: the rest of the body stays unread."""
    METRICS.rejected(status)
    body = json.dumps({"error": message}).encode()
    reason = {400: "Bad Request", 411: "Length Required", 413: "Payload Too Large"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n".encode() + body)
    await writer.drain()
    return None


async def _relay_response(upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy one response from Triton to the client; whether the connection may be reused."""
    head = await upstream.readuntil(b"\r\n\r\n")
    status, headers = _parse_head(head)
    code = status.split(b" ")[1:2]
    if code in ([b"503"], [b"400"]):
        METRICS.rejected(int(code[0]))
    writer.write(head)
    if "content-length" in headers:
        writer.write(await upstream.readexactly(int(headers["content-length"])))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await upstream.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            writer.write(size_line + await upstream.readexactly(size + 2))
            if size == 0:
                break
    await writer.drain()
    return headers.get("connection", "").lower() != "close"
