"""Loki connector and log evidence against a fake of Loki's documented query_range API on a real socket.

A failed query raises here; the logs source turns it into a `failed` section
(tests/investigation/sources/test_sources.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.commands import CommandError
from connectors.loki import LokiClient, LokiError, from_ns, to_ns
from investigation.sources.logs import gather_command_logs, gather_logs, normalise
from tests.support.loki_fake import FakeLoki

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


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
