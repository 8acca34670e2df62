"""The evidence source contract: `gather` fixes the window, records failures, redacts and bounds;
and each source's own choices (skipped when unconfigured, which backend, the query it records).

Failures come from real clients pointed at a closed port and from real subclasses, never mocks.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.loki import LokiClient
from connectors.prometheus import PrometheusClient
from connectors.traces import JaegerClient
from investigation.settings import EvidenceSettings, ServiceEvidence
from investigation.sources import (
    AffectedUsersSource,
    ChangesSource,
    LogsSource,
    MetricsSource,
    SimilarIncidentsSource,
    TracesSource,
    build_evidence_sources,
)
from investigation.sources.base import MAX_FAILURE_CHARS, EvidenceSource, Subject
from models.evidence import EvidenceSection
from models.incident import IncidentView, Stage, TrackedAlert

OPENED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLOSED_PORT = "http://127.0.0.1:1"


def incident(service: str = "cart", *, generator_url: str = "") -> IncidentView:
    alert = TrackedAlert(
        fingerprint="f1",
        status="firing",
        labels={"alertname": "HighErrorRate", "service": service},
        annotations={},
        startsAt=OPENED - timedelta(minutes=5),
        generatorURL=generator_url,
    )
    return IncidentView(
        id="inc-1",
        group_id="g",
        group_key="k",
        receiver="selfheal",
        stage=Stage.RECEIVED,
        status="firing",
        service=service,
        opened_at=OPENED,
        alerts=[alert],
    )


class Recording(EvidenceSource):
    """A source that keeps the subject it was given and answers what it is told to."""

    kind = "recording"

    def __init__(self, evidence: EvidenceSettings, outcome: EvidenceSection | Exception) -> None:
        super().__init__(evidence)
        self.outcome = outcome
        self.subjects: list[Subject] = []

    def query(self, subject: Subject) -> str:
        return f"about {subject.service}"

    def _gather(self, subject: Subject) -> EvidenceSection:
        self.subjects.append(subject)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_the_window_and_the_service_queries_are_fixed_once() -> None:
    cart = ServiceEvidence(logql='{app="cart"}')
    ev = EvidenceSettings(lookback_seconds=600, services={"cart": cart})
    source = Recording(ev, EvidenceSection(source="recording", status="ok"))
    before = datetime.now(UTC)
    assert source.gather(incident()).status == "ok"
    subject = source.subjects[0]
    assert subject.queries == cart and subject.service == "cart"
    assert subject.alert_start == OPENED - timedelta(minutes=5)
    assert subject.since == subject.alert_start - timedelta(seconds=600)
    assert subject.until >= before
    source.gather(incident("other"))
    assert source.subjects[1].queries == ev.default_service


def test_a_failure_becomes_a_failed_section_redacted_and_bounded() -> None:
    boom = RuntimeError("token=abc123 " + "x" * 2000)
    section = Recording(EvidenceSettings(), boom).gather(incident())
    assert section.source == "recording" and section.status == "failed"
    assert section.query == "about cart"
    assert section.message.startswith("RuntimeError: token=[REDACTED] xxx")
    assert len(section.message) <= MAX_FAILURE_CHARS and "abc123" not in section.message


def test_every_message_is_redacted_emails_too_when_asked() -> None:
    said = EvidenceSection(source="recording", status="ok", message="by bob@example.com password=pw")
    plain = Recording(EvidenceSettings(), said.model_copy()).gather(incident())
    strict = Recording(EvidenceSettings(redact_emails=True), said.model_copy()).gather(incident())
    assert plain.message == "by bob@example.com password=[REDACTED]"
    assert strict.message == "by [REDACTED] password=[REDACTED]"


def test_a_connector_error_keeps_its_own_message_and_the_query() -> None:
    ev = EvidenceSettings(default_service=ServiceEvidence(logql='{service="{service}"}'))
    with LokiClient("http://bob:hunter2@127.0.0.1:1", timeout=2) as loki:
        section = LogsSource(ev, loki).gather(incident())
    assert section.status == "failed"
    assert section.query == '{service="cart"}'
    assert section.message.startswith("loki http://bob:[REDACTED]@127.0.0.1:1: ConnectError")
    assert "hunter2" not in section.model_dump_json()


def test_logs_from_a_command() -> None:
    script = "import sys; print('{service} failed password=pw1'); print('{service} ok')"
    ev = EvidenceSettings(default_service=ServiceEvidence(log_command=[sys.executable, "-c", script]))
    source = LogsSource(ev, None)
    section = source.gather(incident())
    assert section.status == "ok", section.message
    assert [line.line for line in section.logs] == ["cart ok", "cart failed password=[REDACTED]"]
    assert section.query.endswith("print('cart ok')")
    unsafe = source.gather(incident("cart; rm -rf /"))
    assert unsafe.status == "skipped" and "not safe" in unsafe.message
    missing = EvidenceSettings(default_service=ServiceEvidence(log_command=["no-such-log-tool-xyz"]))
    failed = LogsSource(missing, None).gather(incident())
    assert failed.status == "failed" and "not found" in failed.message
    assert failed.query == "no-such-log-tool-xyz"
    assert LogsSource(EvidenceSettings(), None).gather(incident()).status == "skipped"


def test_traces() -> None:
    assert TracesSource(EvidenceSettings(), None).gather(incident()).status == "skipped"
    with JaegerClient(CLOSED_PORT, timeout=2) as jaeger:
        section = TracesSource(EvidenceSettings(), jaeger).gather(incident())
    assert section.status == "failed" and "ConnectError" in section.message
    assert section.query == "service=cart error=true"


def test_metrics_and_affected_users() -> None:
    signals = ServiceEvidence(golden_signals={"errors": 'rate(errors{service="{service}"}[5m])'})
    ev = EvidenceSettings(default_service=signals)
    view = incident(generator_url="http://prom/graph?g0.expr=up+%3D%3D+0&g0.tab=1")
    skipped = MetricsSource(ev, None).gather(view)
    assert skipped.status == "skipped" and skipped.message == "no Prometheus configured"
    assert AffectedUsersSource(ev, None).gather(view).status == "skipped"
    with PrometheusClient(CLOSED_PORT, timeout=2) as prom:
        metrics = MetricsSource(ev, prom).gather(view)
        affected = AffectedUsersSource(
            EvidenceSettings(default_service=ServiceEvidence(affected_users="count(users)")), prom
        ).gather(view)
    assert metrics.status == "failed"
    assert metrics.query == (
        'alert expression (HighErrorRate): up == 0; errors: rate(errors{service="cart"}[5m])'
    )
    assert affected.status == "failed" and affected.message.startswith("prometheus query: ConnectionError")


def test_changes_and_similar_without_anything_configured() -> None:
    assert ChangesSource(EvidenceSettings(), {}).gather(incident()).status == "skipped"
    assert SimilarIncidentsSource(EvidenceSettings(), None).gather(incident()).status == "skipped"


def test_sources_in_ticket_order_and_none_when_disabled(tmp_path: Path) -> None:
    def build(ev: EvidenceSettings) -> list[EvidenceSource]:
        return build_evidence_sources(
            ev, prometheus=None, loki=None, traces=None, repos={"app": tmp_path}, store=None
        )

    kinds = [s.kind for s in build(EvidenceSettings())]
    assert kinds == ["metrics", "affected_users", "logs", "traces", "changes", "similar_incidents"]
    assert build(EvidenceSettings(enabled=False)) == []
