"""Tempo and Jaeger trace search against fakes of their documented HTTP APIs on real sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.traces import (
    JaegerClient,
    TempoClient,
    TracesError,
    to_micros,
    to_seconds,
    trace_link,
)
from investigation.sources.traces import gather_traces
from tests.support.traces_fake import FakeServer

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T0_S = 1772366400


TEMPO_TRACES: list[dict[str, Any]] = [
    {
        "traceID": "2f3e0cee77ae5dc9c17ade3689eb2e54",
        "rootServiceName": "checkout",
        "rootTraceName": "POST /pay",
        "startTimeUnixNano": str((T0_S + 30) * 10**9),
        "durationMs": 1234,
    },
    {
        "traceID": "0a1b",
        "rootServiceName": "checkout",
        "rootTraceName": "GET /cart",
        "startTimeUnixNano": str((T0_S + 90) * 10**9 + 500_000),
    },
]


def tempo_route(params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
    # Tempo: start/end in Unix seconds, end after start, tags in logfmt.
    try:
        start, end = int(params["start"]), int(params["end"])
    except (KeyError, ValueError):
        return 400, "invalid start/end: must be unix epoch seconds"
    if start > 10**11 or end <= start:
        return 400, "http: invalid start and end: end must be after start (unix seconds)"
    tags = params.get("tags", "")
    if "status=error" not in tags:
        return 400, "expected status=error"
    if headers.get("X-Scope-OrgID") == "broken":
        return 500, "internal error"
    service = tags.split("service.name=", 1)[1].split(" status=")[0]
    traces = [
        t for t in TEMPO_TRACES if f'"{t["rootServiceName"]}"' == service or t["rootServiceName"] == service
    ]
    traces = [t for t in traces if start <= int(t["startTimeUnixNano"]) // 10**9 <= end]
    return 200, {"traces": traces[: int(params.get("limit", "20"))], "metrics": {"inspectedTraces": 10}}


def _span(
    sid: str, op: str, start_us: int, dur_us: int, pid: str, parent: str = "", err: bool = False
) -> Any:
    refs = [{"refType": "CHILD_OF", "traceID": "t1", "spanID": parent}] if parent else []
    tags = [{"key": "error", "type": "bool", "value": True}] if err else []
    return {
        "traceID": "t1",
        "spanID": sid,
        "operationName": op,
        "references": refs,
        "startTime": start_us,
        "duration": dur_us,
        "tags": tags,
        "processID": pid,
    }


JAEGER_TRACE = {
    "traceID": "t1",
    "spans": [
        _span("b", "SELECT", (T0_S + 10) * 10**6 + 2000, 5000, "p2", parent="a", err=True),
        _span("a", "POST /pay", (T0_S + 10) * 10**6, 250_000, "p1"),
    ],
    "processes": {"p1": {"serviceName": "checkout", "tags": []}, "p2": {"serviceName": "db", "tags": []}},
    "warnings": None,
}


def jaeger_route(params: dict[str, str], _: dict[str, str]) -> tuple[int, Any]:
    if not params.get("service"):
        return 400, {
            "data": None,
            "total": 0,
            "errors": [{"code": 400, "msg": "parameter 'service' is required"}],
        }
    try:
        start, end = int(params["start"]), int(params["end"])
        tags = json.loads(params.get("tags", "{}"))
    except (KeyError, ValueError):
        return 400, {"data": None, "errors": [{"code": 400, "msg": "malformed start/end/tags"}]}
    if start < 10**15 or end <= start:  # microseconds: seconds or ms would be 1970
        return 400, {"data": None, "errors": [{"code": 400, "msg": "start/end must be microseconds"}]}
    if tags != {"error": "true"}:
        return 400, {"data": None, "errors": [{"code": 400, "msg": "expected error tag"}]}
    data = [JAEGER_TRACE] if params["service"] == "checkout" else []
    return 200, {"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}


@pytest.fixture
def tempo() -> Iterator[FakeServer]:
    server = FakeServer("/api/search", tempo_route)
    yield server
    server.close()


@pytest.fixture
def jaeger() -> Iterator[FakeServer]:
    server = FakeServer("/api/traces", jaeger_route)
    yield server
    server.close()


def test_time_units_and_links() -> None:
    assert to_seconds(T0) == T0_S
    assert to_micros(T0 + timedelta(microseconds=7)) == T0_S * 10**6 + 7
    assert trace_link("", "abc") == ""
    assert trace_link("http://jaeger:16686/", "abc") == "http://jaeger:16686/trace/abc"
    assert (
        trace_link("http://grafana/explore?traceId={trace_id}", "a b")
        == "http://grafana/explore?traceId=a%20b"
    )


def test_tempo_search(tempo: FakeServer) -> None:
    with TempoClient(tempo.url, tenant="team-a", ui_url="http://grafana/t/{trace_id}") as client:
        refs = client.search("checkout", T0, T0 + timedelta(minutes=5), limit=5)
    params, headers = tempo.requests[-1]
    assert params == {
        "tags": "service.name=checkout status=error",
        "start": str(T0_S),
        "end": str(T0_S + 300),
        "limit": "5",
    }
    assert headers["X-Scope-OrgID"] == "team-a"
    assert [r.trace_id for r in refs] == ["2f3e0cee77ae5dc9c17ade3689eb2e54", "0a1b"]
    assert refs[0].root_service == "checkout" and refs[0].root_name == "POST /pay"
    assert refs[0].duration_ms == 1234 and refs[1].duration_ms == 0
    assert refs[0].started == T0 + timedelta(seconds=30)
    assert refs[1].started == T0 + timedelta(seconds=90, microseconds=500)
    assert refs[0].url == "http://grafana/t/2f3e0cee77ae5dc9c17ade3689eb2e54"


def test_tempo_quotes_service_names_and_reports_errors(tempo: FakeServer) -> None:
    with TempoClient(tempo.url) as client:
        assert client.search("my svc", T0, T0 + timedelta(minutes=5)) == []
        assert tempo.requests[-1][0]["tags"] == 'service.name="my svc" status=error'
        with pytest.raises(TracesError) as err:
            client.search("checkout", T0, T0)
        assert "400" in str(err.value) and not err.value.retryable
    with TempoClient(tempo.url, tenant="broken") as client, pytest.raises(TracesError) as err:
        client.search("checkout", T0, T0 + timedelta(minutes=5))
    assert err.value.retryable


def test_jaeger_search(jaeger: FakeServer) -> None:
    with JaegerClient(jaeger.url) as client:
        refs = client.search("checkout", T0, T0 + timedelta(minutes=5), limit=7)
    params, _ = jaeger.requests[-1]
    assert params == {
        "service": "checkout",
        "start": str(T0_S * 10**6),
        "end": str((T0_S + 300) * 10**6),
        "limit": "7",
        "tags": '{"error": "true"}',
    }
    [ref] = refs
    assert ref.trace_id == "t1"
    assert ref.root_service == "checkout" and ref.root_name == "POST /pay"
    assert ref.duration_ms == 250.0
    assert ref.started == T0 + timedelta(seconds=10)
    assert ref.error is True
    assert ref.url == f"{jaeger.url}/trace/t1"
    # Who calls whom, from CHILD_OF references: the investigator learns dependencies from it.
    assert [(s.service, s.name, s.parent_service, s.error) for s in ref.spans] == [
        ("db", "SELECT", "checkout", True),
        ("checkout", "POST /pay", "", False),
    ]


def test_jaeger_errors(jaeger: FakeServer) -> None:
    with JaegerClient(jaeger.url, ui_url="") as client:
        assert client.search("other", T0, T0 + timedelta(minutes=1)) == []
        with pytest.raises(TracesError, match="required") as err:
            client.search("", T0, T0 + timedelta(minutes=1))
        assert not err.value.retryable


def test_gather_traces(tempo: FakeServer, jaeger: FakeServer) -> None:
    end = T0 + timedelta(minutes=5)
    with TempoClient(tempo.url) as client:
        ok = gather_traces(client, "checkout", T0, end, ui_url="http://jaeger-ui")
        empty = gather_traces(client, "nobody", T0, end)
        with pytest.raises(TracesError, match="400"):
            gather_traces(client, "checkout", end, T0)
    assert ok.source == "traces" and ok.status == "ok"
    assert [r.trace_id for r in ok.traces] == ["0a1b", "2f3e0cee77ae5dc9c17ade3689eb2e54"]  # newest first
    assert ok.traces[0].url == "http://jaeger-ui/trace/0a1b"
    assert empty.status == "empty" and not empty.traces
    with JaegerClient(jaeger.url) as jclient:
        assert gather_traces(jclient, "checkout", T0, end).traces[0].url == f"{jaeger.url}/trace/t1"
    with (
        JaegerClient("http://127.0.0.1:1", timeout=2) as down,
        pytest.raises(TracesError, match="ConnectError"),
    ):
        gather_traces(down, "checkout", T0, end)
