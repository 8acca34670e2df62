"""The HTTP plumbing the forge and Argo CD fakes share: a threaded server on a free port that hands
each request to the fake's `handle(method, path, headers, body)` and sends back its JSON."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Handles(Protocol):
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload = self.server.fake.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a fake's bug answers 500 (and fails the test), never hangs up
            status, payload = 500, {"message": f"fake error: {exc!r}"}
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: each fake keeps its own request log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: Handles) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class Served:
    """Start/stop a fake on a real socket: `with Fake() as fake: fake.url`."""

    _server: _Server | None = None

    def __enter__(self) -> Any:
        self._server = _Server(self)  # type: ignore[arg-type]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def root(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class HttpError(Exception):
    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(str(payload))
        self.status, self.payload = status, payload
