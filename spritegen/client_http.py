"""KServe v2 over HTTP for spritegen.client, every call bounded by one deadline.

tritonclient.http bounds each socket operation (connect, one read) but not a call: a
server that trickles a body a byte at a time kept a call waiting forever, and its gevent
hub then ignored get_result's own timeout. Here each call runs on a plain socket
(http.client) with a timer that shuts the socket down at the deadline, which ends any
read in progress. tritonclient still encodes requests and decodes responses (its static
`generate_request_body` / `parse_response_body`: binary tensors), so the wire format is
Triton's own. One connection per call: loopback setup costs microseconds, and no
connection state outlives a call that timed out.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

from spritegen.errors import first_line

MAX_ANSWER_BYTES = 1 << 30  # a response promising more is not a spritegen answer


class Timeout(Exception):
    """The call did not complete before its deadline."""


class HttpError(Exception):
    """The server answered with an error status; `status` and the server's `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Http:
    """Calls to a KServe v2 HTTP server at host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def get_json(self, path: str, deadline: float) -> Any:
        _, body = self._exchange("GET", path, None, {}, deadline)
        return json.loads(body)

    def infer(self, model: str, inputs: list, outputs: list, deadline: float) -> Any:
        """One inference call; tritonclient's InferResult, HttpError, Timeout or OSError."""
        from tritonclient.http import InferenceServerClient

        queue_us = max(1, int((deadline - time.monotonic()) * 1e6))  # the server drops it past our deadline
        body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs, timeout=queue_us)
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        answer_headers, answer = self._exchange("POST", f"/v2/models/{model}/infer", body, headers, deadline)
        length = answer_headers.get("inference-header-content-length")
        return InferenceServerClient.parse_response_body(answer, header_length=int(length) if length else None)

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                  deadline: float) -> tuple[dict[str, str], bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("no time left")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=remaining)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # ends a blocked read or write now
                except OSError:
                    pass

        timer = threading.Timer(remaining, expire)
        timer.daemon = True
        timer.start()
        try:
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            length = int(response.getheader("Content-Length") or 0)
            if length > MAX_ANSWER_BYTES:
                raise HttpError(response.status, f"the answer announces {length} bytes, more than any sprite batch")
            data = response.read()
            if expired.is_set() or (response.getheader("Content-Length") and len(data) != length):
                raise Timeout("the answer did not arrive in time")
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise Timeout("the answer did not arrive in time") from None
            if isinstance(exc, OSError):
                raise
            raise HttpError(0, f"malformed HTTP answer ({first_line(exc)})") from None
        finally:
            timer.cancel()
            connection.close()
        if response.status != 200:
            raise HttpError(response.status, _error_text(data))
        return {k.lower(): v for k, v in response.getheaders()}, data


def _error_text(data: bytes) -> str:
    """The server's error line: Triton answers {"error": "..."}."""
    try:
        message = json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        message = data[:200].decode("utf-8", "replace")
    return " ".join(str(message).split())[:500]
