"""perform_http against a real HTTP server on 127.0.0.1: expected, unexpected and failing answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors.http_action import HttpActionError, perform_http
from devstack.temporal_server import free_port
from models.plan import HttpAction


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Server:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.requests.append(
                Recorded(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None)
            )
            path = self.path.split("?", 1)[0]
            if path == "/hang":
                state.release.wait(10)  # held until the test releases it: the client times out first
            status = {"/created": 201, "/missing": 404, "/boom": 503, "/limited": 429}.get(path, 200)
            body = json.dumps({"path": path, "detail": "not here" if status == 404 else "ok"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


def test_expected_status_returns_result_and_sends_body_and_headers(server: Server) -> None:
    action = HttpAction(
        method="POST",
        url=f"{server.url}/created",
        json_body={"replicas": 3},
        headers={"Authorization": "Bearer t0ken", "X-Selfheal": "1"},
    )
    result = perform_http(action)
    assert result.ok and result.status == 201
    assert '"path": "/created"' in result.body
    sent = server.requests[-1]
    assert sent.method == "POST" and sent.body == {"replicas": 3}
    assert sent.headers["Authorization"] == "Bearer t0ken" and sent.headers["X-Selfheal"] == "1"


def test_get_without_body(server: Server) -> None:
    result = perform_http(HttpAction(method="GET", url=f"{server.url}/health", expect_status=[200]))
    assert result.ok and result.status == 200
    assert server.requests[-1].body is None


def test_unexpected_client_error_is_not_retryable_and_names_url_and_status(server: Server) -> None:
    with pytest.raises(HttpActionError) as err:
        perform_http(HttpAction(method="DELETE", url=f"{server.url}/missing?token=s3cret"))
    assert not err.value.retryable
    message = str(err.value)
    assert f"{server.url}/missing" in message and "404" in message and "not here" in message
    assert "s3cret" not in message  # query strings often carry tokens


def test_expected_status_may_include_an_error_code(server: Server) -> None:
    result = perform_http(HttpAction(url=f"{server.url}/missing", expect_status=[404]))
    assert result.ok and result.status == 404


@pytest.mark.parametrize("path", ["/boom", "/limited"])
def test_server_errors_and_rate_limits_are_retryable(server: Server, path: str) -> None:
    with pytest.raises(HttpActionError) as err:
        perform_http(HttpAction(url=f"{server.url}{path}"))
    assert err.value.retryable


def test_connection_refused_is_retryable() -> None:
    with pytest.raises(HttpActionError) as err:
        perform_http(HttpAction(url=f"http://127.0.0.1:{free_port()}/deploy"))
    assert err.value.retryable
    assert "Connect" in str(err.value)


def test_timeout_is_retryable(server: Server) -> None:
    with pytest.raises(HttpActionError) as err:
        perform_http(HttpAction(url=f"{server.url}/hang", timeout_seconds=0.3))
    assert err.value.retryable
    assert "Timeout" in str(err.value)


def test_bad_url_is_not_retryable() -> None:
    with pytest.raises(HttpActionError) as err:
        perform_http(HttpAction(url="ftp://127.0.0.1/x"))
    assert not err.value.retryable
