"""What `spritegen serve` checks before starting Triton, each failure one line (exit 1).

Triton, left to find out itself, took 122 s to give up on a host name that does not
resolve (then a traceback), and on a port in use printed ~200 lines of log ending in an
unrelated access-token message. So the host is resolved here, with a bound, and every
port is bound here first: the HTTP one is kept (the gate serves on it, serving.gate),
the others are released for Triton a moment later.
"""

from __future__ import annotations

import errno
import socket
import threading

from spritegen.errors import InputError, shown

RESOLVE_S = 5.0  # a resolver that has not answered by then will not help


def resolve(host: str) -> str:
    """`host` as one numeric address (the first the resolver gives), or InputError."""
    answer: list[object] = []
    worker = threading.Thread(target=lambda: answer.append(_lookup(host)), daemon=True)
    worker.start()
    worker.join(RESOLVE_S)
    if not answer:
        raise InputError(f"--host {shown(host)} did not resolve within {RESOLVE_S:g} s; give an IP address")
    if isinstance(answer[0], Exception):
        raise InputError(f"--host {shown(host)} does not resolve ({answer[0]}); give an IP address or a known name")
    return str(answer[0])


def _lookup(host: str) -> str | Exception:
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
    except (OSError, UnicodeError) as exc:
        return exc


def listen(address: str, port: int, flag: str) -> socket.socket:
    """A listening socket on address:port, or InputError saying why not (in use, not ours)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton does: TIME_WAIT is no conflict
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {address} is in use (another spritegen serve?); stop that or "
                             f"choose another with {flag}") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise InputError(f"--host {address} is not an address of this machine; give one of its addresses "
                             "(127.0.0.1 for this machine only)") from None
        raise InputError(f"cannot listen on {address}:{port} ({exc.strerror}); choose another {flag}") from None
    return sock


def check_free(address: str, port: int, flag: str) -> None:
    """InputError unless address:port can be listened on now (Triton takes it next)."""
    listen(address, port, flag).close()


def loopback_port() -> int:
    """A free port on 127.0.0.1 for Triton's own HTTP server (behind the gate)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
