"""Loki connector and log evidence against a fake of Loki's documented query_range API on a real socket.

A failed query raises here; the logs source turns it into a `failed` section
(tests/investigation/sources/test_sources.py).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from connectors.commands import CommandError
from connectors.loki import LokiClient, LokiError, from_ns, to_ns
from investigation.sources.logs import gather_command_logs, gather_logs, normalise

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
_SELECTOR = re.compile(r'(\w+)="([^"]*)"')


class FakeLoki:
    """Enough of Loki: parameter validation as Loki does it, label selectors, limit and direction."""

    def __init__(self, *, tenant: str | None = None) -> None:
        self.entries: list[tuple[int, dict[str, str], str]] = []
        self.requests: list[tuple[dict[str, str], dict[str, str]]] = []
        self.tenant = tenant
        self.fail_status: int | None = None
        self.metric = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((params, dict(self.headers)))
                if url.path != "/loki/api/v1/query_range":
                    return self._send(404, "404 page not found\n")
                if fake.tenant is not None and self.headers.get("X-Scope-OrgID") != fake.tenant:
                    return self._send(401, "no org id\n")
                if fake.fail_status:
                    return self._send(fake.fail_status, "too many outstanding requests\n")
                error = fake.validate(params)
                if error:
                    return self._send(400, error + "\n")
                self._send(200, json.dumps(fake.answer(params)), "application/json")

            def _send(self, status: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def validate(self, params: dict[str, str]) -> str:
        if not params.get("query"):
            return "parse error : syntax error: unexpected $end"
        try:
            start, end = int(params["start"]), int(params["end"])
        except (KeyError, ValueError):
            return "invalid start/end"
        if start < 10**18 or end < 10**18:  # seconds or ms would be a date in 1970
            return "start/end must be in nanoseconds for this fake"
        if end <= start:
            return "end timestamp must not be before or equal to start time"
        if not params.get("limit", "100").isdigit():
            return "invalid limit"
        if params.get("direction", "backward") not in ("forward", "backward"):
            return "invalid direction"
        return ""

    def answer(self, params: dict[str, str]) -> dict[str, Any]:
        if self.metric:
            return {"status": "success", "data": {"resultType": "matrix", "result": []}}
        wanted = dict(_SELECTOR.findall(params["query"].split("}")[0]))
        start, end = int(params["start"]), int(params["end"])
        hits = [
            e
            for e in self.entries
            if start <= e[0] < end and all(e[1].get(k) == v for k, v in wanted.items())
        ]
        hits.sort(key=lambda e: e[0], reverse=params.get("direction", "backward") == "backward")
        hits = hits[: int(params.get("limit", "100"))]
        streams: dict[str, dict[str, Any]] = {}
        for ns, labels, line in hits:
            key = json.dumps(labels, sort_keys=True)
            streams.setdefault(key, {"stream": labels, "values": []})["values"].append([str(ns), line])
        return {"status": "success", "data": {"resultType": "streams", "result": list(streams.values())}}

    def add(self, at: datetime, line: str, **labels: str) -> None:
        self.entries.append((to_ns(at), labels or {"app": "api"}, line))

    def __enter__(self) -> FakeLoki:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loki() -> Iterator[FakeLoki]:
    with FakeLoki() as fake:
        yield fake


def test_time_conversion_is_exact_nanoseconds() -> None:
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert to_ns(at) == 1772366400_123456000
    assert from_ns(to_ns(at)) == at
    assert to_ns(at.replace(tzinfo=None)) == to_ns(at)


def test_query_range_sends_documented_parameters_and_parses_streams(loki: FakeLoki) -> None:
    loki.add(T0 + timedelta(seconds=1), "first", app="api", pod="a")
    loki.add(T0 + timedelta(seconds=3), "third", app="api", pod="b")
    loki.add(T0 + timedelta(seconds=2), "second", app="api", pod="a")
    loki.add(T0 + timedelta(seconds=2), "other app", app="web")
    with LokiClient(loki.url) as client:
        lines = client.query_range('{app="api"}', T0, T0 + timedelta(minutes=1), limit=10)
    assert [x.line for x in lines] == ["third", "second", "first"]
    assert lines[0].labels == {"app": "api", "pod": "b"}
    assert lines[0].at == T0 + timedelta(seconds=3)
    params, headers = loki.requests[-1]
    assert params == {
        "query": '{app="api"}',
        "start": str(to_ns(T0)),
        "end": str(to_ns(T0 + timedelta(minutes=1))),
        "limit": "10",
        "direction": "backward",
    }
    assert "X-Scope-OrgID" not in headers


def test_tenant_header() -> None:
    with FakeLoki(tenant="team-a") as loki:
        loki.add(T0, "hello")
        with LokiClient(loki.url, tenant="team-a", headers={"Authorization": "Bearer x"}) as client:
            assert [x.line for x in client.query_range('{app="api"}', T0, T0 + timedelta(seconds=5))] == [
                "hello"
            ]
        assert loki.requests[-1][1]["X-Scope-OrgID"] == "team-a"
        assert loki.requests[-1][1]["Authorization"] == "Bearer x"
        with LokiClient(loki.url) as client, pytest.raises(LokiError) as err:
            client.query_range('{app="api"}', T0, T0 + timedelta(seconds=5))
        assert "401" in str(err.value)
        assert not err.value.retryable


def test_rejected_query_is_not_retryable_and_overload_is(loki: FakeLoki) -> None:
    with LokiClient(loki.url) as client:
        with pytest.raises(LokiError) as err:
            client.query_range('{app="api"}', T0, T0)  # empty range: Loki answers 400
        assert "400" in str(err.value) and not err.value.retryable
        loki.fail_status = 429
        with pytest.raises(LokiError) as err:
            client.query_range('{app="api"}', T0, T0 + timedelta(seconds=1))
        assert err.value.retryable
        loki.fail_status = None
        loki.metric = True
        with pytest.raises(LokiError, match="metric query"):
            client.query_range('rate({app="api"}[1m])', T0, T0 + timedelta(seconds=1))


def test_normalise() -> None:
    a = normalise("req 7f1c2a9e-0b1d-4c3e-8f00-123456789abc took 31ms id=deadbeef42 at 0x1f")
    b = normalise("req 00000000-1111-2222-3333-444444444444 took 7ms id=cafebabe99 at 0xff")
    assert a == b == "req <uuid> took <n>ms id=<hex> at <hex>"


def test_gather_logs_dedupes_redacts_and_orders_newest_first(loki: FakeLoki) -> None:
    for i in range(5):
        loki.add(T0 + timedelta(seconds=i), f"timeout calling db after {1000 + i}ms req={i:08x}")
    loki.add(T0 + timedelta(seconds=10), "login failed password=hunter2 for bob@example.com")
    loki.add(T0 + timedelta(seconds=7), "GET /api/tokens 200")
    with LokiClient(loki.url) as client:
        section = gather_logs(client, '{app="api"}', T0, T0 + timedelta(minutes=1), emails=True)
    assert section.source == "logs"
    assert section.status == "ok"
    assert section.query == '{app="api"}'
    assert [(x.line, x.count) for x in section.logs] == [
        ("login failed password=[REDACTED] for [REDACTED]", 1),
        ("GET /api/tokens 200", 1),
        ("timeout calling db after 1004ms req=00000004", 5),
    ]
    assert "7 lines, 3 distinct" in section.message
    assert "hunter2" not in section.model_dump_json()


def test_gather_logs_caps_lines_and_bytes(loki: FakeLoki) -> None:
    for i in range(30):
        loki.add(T0 + timedelta(seconds=i), f"distinct event {'abcdefghijklmnopqrstuvwxyz'[i % 26]}{i // 26}")
    with LokiClient(loki.url) as client:
        by_count = gather_logs(client, '{app="api"}', T0, T0 + timedelta(minutes=1), max_lines=5)
        by_bytes = gather_logs(client, '{app="api"}', T0, T0 + timedelta(minutes=1), max_bytes=100)
        one_huge = gather_logs(client, '{app="api"}', T0, T0 + timedelta(minutes=1), max_bytes=10)
    assert by_count.status == "truncated" and len(by_count.logs) == 5
    assert by_count.logs[0].line == "distinct event d1"  # the newest (i=29)
    assert by_bytes.status == "truncated"
    assert sum(len(x.line.encode()) for x in by_bytes.logs) <= 100
    assert len(by_bytes.logs) == 100 // len(b"distinct event d1")
    assert one_huge.status == "truncated" and len(one_huge.logs) == 1
    assert len(one_huge.logs[0].line.encode()) <= 10


def test_gather_logs_empty_and_failed(loki: FakeLoki) -> None:
    with LokiClient(loki.url) as client:
        empty = gather_logs(client, '{app="nothing"}', T0, T0 + timedelta(minutes=1))
        with pytest.raises(LokiError, match=r"400.*syntax error"):
            gather_logs(client, "", T0, T0 + timedelta(minutes=1))
    assert empty.status == "empty" and not empty.logs
    with (
        LokiClient("http://127.0.0.1:1", timeout=2) as client,
        pytest.raises(LokiError, match="ConnectError"),
    ):
        gather_logs(client, '{app="api"}', T0, T0 + timedelta(minutes=1))


def test_gather_command_logs(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "for i in range(3): print(f'retrying job {i} token=abc{i}')\n"
        "print('last line Authorization: Bearer zz99zz99zz')\n"
    )
    section = gather_command_logs([sys.executable, "-c", script], 30, cwd=tmp_path)
    assert section.status == "ok", section.message
    assert [(x.line, x.count) for x in section.logs] == [
        ("last line Authorization: Bearer [REDACTED]", 1),
        ("retrying job 2 token=[REDACTED]", 3),
    ]
    capped = gather_command_logs([sys.executable, "-c", script], 30, cwd=tmp_path, max_lines=1)
    assert capped.status == "truncated" and len(capped.logs) == 1


def test_gather_command_logs_failures(tmp_path: Path) -> None:
    failing = gather_command_logs(
        [sys.executable, "-c", "import sys; sys.exit('no access password=pw1')"], 30, cwd=tmp_path
    )
    assert failing.status == "failed"
    assert "exit status 1" in failing.message and "password=[REDACTED]" in failing.message
    with pytest.raises(CommandError, match="not found"):
        gather_command_logs(["no-such-log-tool-xyz"], 30, cwd=tmp_path)
    empty = gather_command_logs([sys.executable, "-c", "pass"], 30, cwd=tmp_path)
    assert empty.status == "empty"
