"""AlertmanagerClient against a real Alertmanager: firing, resolved, silenced, unknown alerts."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.alertmanager import AlertmanagerClient, AlertmanagerError, matcher
from demo.observability import alertmanager_server, prometheus_server
from devstack.temporal_server import free_port
from tests.support.metric_target import MetricTarget

DEADLINE = 30.0


@pytest.fixture(scope="module")
def am_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with alertmanager_server(tmp_path_factory.mktemp("alertmanager")) as url:
        yield url


@pytest.fixture
def client(am_url: str) -> Iterator[AlertmanagerClient]:
    with AlertmanagerClient(am_url, timeout=5) as c:
        yield c


def _labels(**extra: str) -> dict[str, str]:
    return {"alertname": "SelfhealConnectorTest", "service": "demo", "run": uuid.uuid4().hex, **extra}


def _post(am_url: str, labels: dict[str, str], *, resolved: bool = False) -> None:
    now = datetime.now(UTC)
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": "connector test"},
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
    }
    if resolved:
        alert["endsAt"] = (now - timedelta(seconds=30)).isoformat()
    response = httpx.post(f"{am_url}/api/v2/alerts", json=[alert], timeout=5)
    assert response.status_code == 200, response.text


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)


def test_matcher_quotes_and_escapes() -> None:
    assert matcher("service", 'we"ird\\') == 'service="we\\"ird\\\\"'


def test_firing_alert_is_found_by_labels_and_by_fingerprint(client: AlertmanagerClient, am_url: str) -> None:
    labels = _labels()
    _post(am_url, labels)
    _eventually(lambda: client.is_firing(None, labels), "alert firing by labels")
    [raw] = client.alerts(labels)
    assert raw["labels"] == labels and raw["status"]["state"] in ("active", "unprocessed")
    fingerprint = raw["fingerprint"]
    assert client.is_firing(fingerprint, {})
    assert client.is_firing(fingerprint, {"alertname": labels["alertname"]})
    # Exact label set: a subset or a superset names a different alert.
    assert not client.is_firing(None, {k: v for k, v in labels.items() if k != "service"})
    assert not client.is_firing(None, {**labels, "extra": "x"})


def test_resolved_alert_is_not_firing(client: AlertmanagerClient, am_url: str) -> None:
    labels = _labels()
    _post(am_url, labels)
    _eventually(lambda: client.is_firing(None, labels), "alert firing")
    fingerprint = client.alerts(labels)[0]["fingerprint"]
    _post(am_url, labels, resolved=True)
    _eventually(lambda: not client.is_firing(None, labels), "alert resolved")
    assert not client.is_firing(fingerprint, {})


def test_unknown_fingerprint_is_not_firing(client: AlertmanagerClient, am_url: str) -> None:
    labels = _labels()
    _post(am_url, labels)
    _eventually(lambda: client.is_firing(None, labels), "alert firing")
    assert not client.is_firing("0123456789abcdef", {})
    assert not client.is_firing("0123456789abcdef", labels)


def test_silenced_alert_is_not_firing(client: AlertmanagerClient, am_url: str) -> None:
    labels = _labels()
    _post(am_url, labels)
    _eventually(lambda: client.is_firing(None, labels), "alert firing")
    now = datetime.now(UTC)
    silence = {
        "matchers": [{"name": "run", "value": labels["run"], "isRegex": False}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "selfheal-tests",
        "comment": "connector test",
    }
    response = httpx.post(f"{am_url}/api/v2/silences", json=silence, timeout=5)
    assert response.status_code == 200, response.text
    _eventually(lambda: not client.is_firing(None, labels), "alert silenced")
    assert client.alerts(labels, silenced=True)  # still there, just muted


def test_an_absent_alert_on_a_fresh_alertmanager_is_unknown_not_resolved(
    client: AlertmanagerClient, am_url: str
) -> None:
    """A restarted Alertmanager has no alerts until Prometheus re-sends them: within the warm-up,
    absence proves nothing; after it (or with warm-up 0), absence means resolved."""
    uptime = client.uptime_seconds()
    assert uptime is not None and 0 <= uptime < 3600
    labels = _labels()
    assert client.firing_state(None, labels, warmup_seconds=uptime + 3600) == "unknown"
    assert client.firing_state(None, labels, warmup_seconds=0) == "resolved"
    _post(am_url, labels)
    _eventually(lambda: client.is_firing(None, labels), "the alert to be active")
    assert client.firing_state(None, labels, warmup_seconds=uptime + 3600) == "firing"


def test_needs_a_fingerprint_or_labels(client: AlertmanagerClient) -> None:
    with pytest.raises(AlertmanagerError) as err:
        client.is_firing(None, {})
    assert not err.value.retryable


def test_unreachable_alertmanager_is_retryable() -> None:
    with (
        AlertmanagerClient(f"http://127.0.0.1:{free_port()}", timeout=2) as c,
        pytest.raises(AlertmanagerError) as err,
    ):
        c.is_firing(None, {"alertname": "x"})
    assert err.value.retryable


def test_bad_filter_is_not_retryable(client: AlertmanagerClient) -> None:
    with pytest.raises(AlertmanagerError) as err:
        client.alerts(["not a matcher"])
    assert not err.value.retryable


class _Webhook:
    """Collects Alertmanager's webhook deliveries with their Authorization header."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.received.append((self.headers.get("Authorization"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> _Webhook:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alertmanager_helper_delivers_to_the_webhook_with_the_token(tmp_path: Path) -> None:
    with _Webhook() as hook, alertmanager_server(tmp_path, webhook_url=hook.url, token="s3cret") as url:
        labels = _labels()
        _post(url, labels)
        _eventually(lambda: bool(hook.received), "webhook delivery")
    auth, payload = hook.received[0]
    assert auth == "Bearer s3cret"
    assert payload["alerts"][0]["labels"] == labels


def test_prometheus_rule_reaches_alertmanager(tmp_path: Path) -> None:
    """The whole chain the remediation verifies against: metric → rule → Alertmanager → is_firing."""
    rules = """
groups:
  - name: demo
    rules:
      - alert: DemoErrorRatioHigh
        expr: demo_error_ratio > 0.1
        labels: {severity: page}
"""
    with (
        MetricTarget() as target,
        alertmanager_server(tmp_path / "am") as am,
        prometheus_server(tmp_path / "prom", [target.address], rules_yaml=rules, alertmanager_url=am),
        AlertmanagerClient(am) as client,
    ):
        target.set("demo_error_ratio", 0.5)
        _eventually(lambda: bool(client.alerts({"alertname": "DemoErrorRatioHigh"})), "rule firing")
        alert = client.alerts({"alertname": "DemoErrorRatioHigh"})[0]
        assert alert["labels"]["severity"] == "page"
        assert client.is_firing(alert["fingerprint"], {"alertname": "DemoErrorRatioHigh"})
        assert client.is_firing(None, alert["labels"])
