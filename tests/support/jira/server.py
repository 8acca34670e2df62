"""The HTTP side: one threaded server on 127.0.0.1, and Jira's error answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NoReturn

from tests.support.jira.model import JsonDict

if TYPE_CHECKING:
    from tests.support.jira.fake import JiraFake


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _HTTPError(Exception):
    """Raised inside a handler; becomes the error response Jira would send."""

    def __init__(
        self, status: int, payload: JsonDict | str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})


def _fail(status: int, messages: Sequence[str] = (), errors: Mapping[str, str] | None = None) -> NoReturn:
    raise _HTTPError(status, {"errorMessages": list(messages), "errors": dict(errors or {})})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed-ACK stall
    server: _Server

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = self.server.fake._dispatch(self.command, self.path, headers, body)
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if resp.status != 204:
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.body and resp.status != 204:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (timeout, killed worker)
            self.close_connection = True

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake keeps its own request log (`JiraFake.requests`)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: JiraFake) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
