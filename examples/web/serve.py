"""A small static server for the browser demo: the page, onnxruntime-web and an export.

    python examples/web/serve.py --export spritegen-export          # http://127.0.0.1:8765/
    python examples/web/serve.py --export spritegen-export --no-isolation

URL layout (one origin, so nothing is fetched from a CDN):
    /            examples/web (index.html, demo.js, spritegen.js, noise.js)
    /ort/        node_modules/onnxruntime-web/dist (after `npm ci` in examples/web)
    /export/     the directory given with --export: an export (the page's default), or a
                 directory of exports that pages pick with ?export=export/NAME/

Every response carries Cross-Origin-Opener-Policy: same-origin and
Cross-Origin-Embedder-Policy: require-corp, which make the page cross-origin isolated:
only then does the browser offer SharedArrayBuffer, which onnxruntime-web's WebAssembly
threads need. With --no-isolation the headers are left out and onnxruntime-web runs on
one thread (docs/web.md has the measured difference). Python's standard library only.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import posixpath
import sys
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORT_DIST = HERE / "node_modules" / "onnxruntime-web" / "dist"
# Not 8000-8002, where `spritegen serve` (Triton) listens by default: both may run at once.
DEFAULT_PORT = 8765
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves `mounts` (URL prefix -> directory, longest prefix first); isolation headers on request."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                      ".onnx": "application/octet-stream", ".json": "application/json"}

    def __init__(self, *args, mounts: list[tuple[str, Path]], isolate: bool, quiet: bool, **kwargs) -> None:
        self.mounts, self.isolate, self.quiet = mounts, isolate, quiet
        super().__init__(*args, directory=str(HERE), **kwargs)

    def translate_path(self, path: str) -> str:
        """The file a URL path names under its mount; a path outside every mount names nothing."""
        clean = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(path).path))
        for prefix, root in self.mounts:
            if clean == prefix.rstrip("/") or clean.startswith(prefix) or prefix == "/":
                self.directory = str(root)
                rest = clean[len(prefix.rstrip("/")):] or "/"
                return super().translate_path(rest + ("/" if path.split("?")[0].endswith("/") else ""))
        return str(HERE / "__no_such_file__")

    def end_headers(self) -> None:
        if self.isolate:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def list_directory(self, path):  # no directory listings: serve files only
        self.send_error(404, "no listing")
        return None

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(export: Path | None, host: str = "127.0.0.1", port: int = DEFAULT_PORT, isolate: bool = True,
                quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A server (not yet serving) for the layout in the module doc; port 0 picks a free one."""
    mounts = [("/ort/", ORT_DIST)] + ([("/export/", Path(export).resolve())] if export else []) + [("/", HERE)]
    handler = functools.partial(Handler, mounts=mounts, isolate=isolate, quiet=quiet)
    return http.server.ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path, help="export directory served at /export/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free port")
    parser.add_argument("--no-isolation", action="store_true",
                        help="leave out COOP/COEP: no SharedArrayBuffer, so onnxruntime-web runs one thread")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args(argv)
    if args.export is not None and not args.export.is_dir():
        print(f"error: export directory {args.export} does not exist; create one with spritegen-export",
              file=sys.stderr)
        return 2
    if not ORT_DIST.is_dir():
        print(f"error: {ORT_DIST} is missing; run `npm ci` in {HERE}", file=sys.stderr)
        return 2
    try:
        server = make_server(args.export, args.host, args.port, not args.no_isolation, args.quiet)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port",
              file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"serving http://{host}:{port}/ (cross-origin isolated: {'no' if args.no_isolation else 'yes'})",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
