"""PrometheusClient against a real Prometheus scraping a target whose gauges the tests flip."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.prometheus import PrometheusClient, PrometheusError, parse_condition
from demo.observability import prometheus_server
from devstack.temporal_server import free_port
from tests.support.metric_target import MetricTarget

SEEN_TIMEOUT = 30.0  # Prometheus picks up new targets a few seconds after start


@dataclass
class Stack:
    target: MetricTarget
    client: PrometheusClient


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    with MetricTarget() as target, prometheus_server(workdir, [target.address]) as url:
        with PrometheusClient(url, timeout=5) as client:
            yield Stack(target, client)


def _metric() -> str:
    return f"demo_error_ratio_{uuid.uuid4().hex[:8]}"


def _set_and_wait(stack: Stack, name: str, value: float) -> None:
    """Set the gauge and poll until Prometheus has scraped exactly that value."""
    stack.target.set(name, value)
    deadline = time.monotonic() + SEEN_TIMEOUT
    while stack.client.query(name) != [value]:
        assert time.monotonic() < deadline, f"Prometheus never saw {name}={value}"
        time.sleep(0.1)


# ----------------------------------------------------------------------------- no server needed


@pytest.mark.parametrize(
    ("condition", "values", "expected"),
    [
        ("< 0.01", [0.001], True),
        ("< 0.01", [0.001, 0.5], False),
        ("<0.01", [], False),
        (">= 3", [3.0, 4.0], True),
        ("== 0", [0.0], True),
        ("!= 0", [float("nan")], False),
        ("> -1e-3", [0.0], True),
        ("<= 1.5", [1.5], True),
    ],
)
def test_check(condition: str, values: list[float], expected: bool) -> None:
    assert PrometheusClient.check(condition, values) is expected


@pytest.mark.parametrize("bad", ["", "< ", "0.01", "=< 1", "< 1; import os", "< __import__('os')", "<< 1"])
def test_bad_conditions_are_refused_without_eval(bad: str) -> None:
    with pytest.raises(PrometheusError) as err:
        parse_condition(bad)
    assert not err.value.retryable


def test_hold_window_logic_with_a_fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls every second: pass, pass, FAIL, then passes; hold_for=3 must count from after the failure."""
    client = PrometheusClient("http://127.0.0.1:1")
    series = iter([[0.0], [0.0], [0.5], [], [0.0], [0.0], [0.0], [0.0], [0.0]])
    now = [0.0]
    monkeypatch.setattr(client, "query", lambda _q: next(series))

    def sleep(seconds: float) -> None:
        now[0] += seconds

    result = client.verify(
        "q", "< 0.1", hold_for=3, timeout=60, poll_interval=1, clock=lambda: now[0], sleep=sleep
    )
    assert result.ok
    assert [v for _, v in result.samples] == [0.0, 0.0, 0.5, None, 0.0, 0.0, 0.0, 0.0]
    assert now[0] == 7.0  # window restarted at t=4 (after the empty poll at t=3), held until t=7


def test_unreachable_prometheus_is_retryable_and_unhealthy() -> None:
    client = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert client.healthy() is False
    with pytest.raises(PrometheusError) as err:
        client.query("up")
    assert err.value.retryable


# ------------------------------------------------------------------------------ real Prometheus


def test_healthy(stack: Stack) -> None:
    assert stack.client.healthy()


def test_query_sees_the_flipped_value(stack: Stack) -> None:
    name = _metric()
    _set_and_wait(stack, name, 0.2)
    _set_and_wait(stack, name, 0.05)
    assert stack.client.query(f"scalar({name})") == [0.05]
    assert stack.client.query(f"{name} * 2") == [0.1]
    assert stack.client.query(f"{name}_does_not_exist") == []


def test_series_labels(stack: Stack) -> None:
    name = _metric()
    stack.target.set(name, 1, owner="web")
    deadline = time.monotonic() + SEEN_TIMEOUT
    while not stack.client.series_labels(name):
        assert time.monotonic() < deadline, f"Prometheus never saw {name}"
        time.sleep(0.1)
    (labels,) = stack.client.series_labels(name)
    assert {"__name__": name, "job": "targets", "owner": "web"}.items() <= labels.items()
    assert stack.client.series_labels(f"max by (owner) ({name})") == [{"owner": "web"}]
    assert stack.client.series_labels(f"scalar({name})") == []
    assert stack.client.series_labels(f"{name}_does_not_exist") == []
    with pytest.raises(PrometheusError) as err:
        stack.client.series_labels("sum(")
    assert not err.value.retryable


def test_bad_promql_is_not_retryable(stack: Stack) -> None:
    with pytest.raises(PrometheusError) as err:
        stack.client.query("sum(")
    assert not err.value.retryable
    assert "parse error" in str(err.value)
    with pytest.raises(PrometheusError, match="range vector"):
        stack.client.query("up[1m]")


def test_query_range(stack: Stack) -> None:
    name = _metric()
    _set_and_wait(stack, name, 0.3)
    end = datetime.now(UTC) + timedelta(seconds=1)
    series = stack.client.query_range(name, end - timedelta(seconds=30), end, step=1)
    assert len(series) == 1
    assert series[0].labels["__name__"] == name
    assert series[0].samples and all(v == 0.3 for _, v in series[0].samples)


def test_verify_succeeds_when_the_value_stays_low(stack: Stack) -> None:
    name = _metric()
    _set_and_wait(stack, name, 0.001)
    started = time.monotonic()
    result = stack.client.verify(name, "< 0.01", hold_for=2, timeout=20, poll_interval=0.25)
    assert result.ok, result.reason
    assert time.monotonic() - started >= 2
    assert result.samples[-1][0] - result.samples[0][0] >= 2
    assert all(v == 0.001 for _, v in result.samples)
    assert "held for" in result.reason


def test_verify_fails_with_a_reason_when_the_value_stays_high(stack: Stack) -> None:
    name = _metric()
    _set_and_wait(stack, name, 0.2)
    started = time.monotonic()
    result = stack.client.verify(name, "< 0.01", hold_for=1, timeout=3, poll_interval=0.25)
    assert not result.ok
    assert time.monotonic() - started >= 3
    assert "0.2 does not satisfy < 0.01" in result.reason
    assert len(result.samples) >= 3


def test_verify_treats_an_empty_result_as_not_met(stack: Stack) -> None:
    result = stack.client.verify(f"{_metric()}_absent", "< 0.01", hold_for=0, timeout=1, poll_interval=0.25)
    assert not result.ok
    assert "no data" in result.reason
    assert all(v is None for _, v in result.samples)


def test_verify_restarts_the_hold_window_when_the_value_flips(stack: Stack) -> None:
    """Low, then flipped high mid-hold, then low again: success only after a fresh full hold."""
    name = _metric()
    _set_and_wait(stack, name, 0.001)
    seen: list[float | None] = []

    def flip(_t: float, value: float | None) -> None:
        seen.append(value)
        if len(seen) == 2:
            stack.target.set(name, 0.5)  # mid-hold: the next scrape makes the condition fail
        elif value == 0.5:
            stack.target.set(name, 0.001)

    hold = 3.0
    result = stack.client.verify(
        name, "< 0.01", hold_for=hold, timeout=30, poll_interval=0.25, on_sample=flip
    )
    assert result.ok, result.reason
    values = [v for _, v in result.samples]
    assert 0.5 in values
    first_high = values.index(0.5)
    last_high = max(i for i, v in enumerate(values) if v == 0.5)
    assert result.samples[first_high][0] - result.samples[0][0] < hold  # the first window was cut short
    first_low_after = result.samples[last_high + 1][0]
    assert result.samples[-1][0] - first_low_after >= hold - 0.3  # a whole new window after the flip
