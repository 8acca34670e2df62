"""Evidence activities: gather what each configured source knows about an incident, write it to
the ticket (graphs attached), and remember closed incidents for the next similar one.

Every source is optional and bounded; a failing source becomes a `failed` section, never a
failed incident. Graph PNGs go straight to the ticket and are stripped from the result, so
workflow history stays small.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import structlog
from temporalio import activity

from activities.tickets import TicketPolicy
from connectors.base import TicketContent, Tracker
from models.evidence import Evidence, EvidenceSection
from models.incident import IncidentView
from models.tickets import EvidenceRequest
from pages.ticket import build_page
from selfheal.settings import ServiceEvidence, Settings

if TYPE_CHECKING:
    from connectors.incident_store import IncidentStore

log = structlog.get_logger(__name__)

#: A service name that may be placed inside a command argument (it comes from alert labels).
SAFE_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def alert_expression(generator_url: str) -> str | None:
    """The alert rule's PromQL, from Prometheus' generatorURL (`…/graph?g0.expr=…`)."""
    try:
        values = parse_qs(urlsplit(generator_url).query).get("g0.expr")
    except ValueError:
        return None
    return values[0] if values else None


class EvidenceActivities:
    def __init__(
        self,
        settings: Settings,
        tracker: Tracker,
        policy: TicketPolicy,
        playbook_category: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.policy = policy
        #: Looks up a playbook's `category:` by name, for the loop's metrics.
        self.playbook_category = playbook_category or (lambda _name: "")
        self._incident_store: IncidentStore | None = None
        self._store_lock = threading.Lock()

    def _store(self) -> IncidentStore:
        """One IncidentStore (engine and connection pool) per worker, made on first use: building
        one per call (engine, create_all, column check) cost more than the search itself."""
        from connectors.incident_store import IncidentStore

        with self._store_lock:
            if self._incident_store is None:
                self._incident_store = IncidentStore(self.settings.store_url)
            return self._incident_store

    def _service(self, service: str) -> ServiceEvidence:
        ev = self.settings.evidence
        return ev.services.get(service, ev.default_service)

    def _gather(self, view: IncidentView) -> Evidence:
        ev = self.settings.evidence
        svc = self._service(view.service)
        start = view.alert_start()
        sections: list[EvidenceSection] = []

        def add(source: str, fn: Callable[[], EvidenceSection]) -> None:
            try:
                sections.append(fn())
            except Exception as err:  # a source must never fail the incident
                sections.append(EvidenceSection(source=source, status="failed", message=str(err)[:300]))

        prom_url = ev.prometheus_url or self.settings.remediation.prometheus_url
        add("metrics", lambda: self._metrics(prom_url, view, svc, start))
        add("affected_users", lambda: self._affected(prom_url, view, svc))
        add("logs", lambda: self._logs(view.service, svc, start))
        add("traces", lambda: self._traces(view.service, start))
        add("changes", lambda: self._changes(svc, view.service, start))
        add("similar_incidents", lambda: self._similar(view))
        return Evidence(incident_id=view.id, gathered_at=datetime.now(UTC), sections=sections)

    def _window(self, start: datetime) -> tuple[datetime, datetime]:
        return start - timedelta(seconds=self.settings.evidence.lookback_seconds), datetime.now(UTC)

    def _logs(self, service: str, svc: ServiceEvidence, start: datetime) -> EvidenceSection:
        """Loki when a LogQL template is configured, else the configured log command, else skipped."""
        from connectors.loki import LokiClient, gather_command_logs, gather_logs

        ev = self.settings.evidence
        begin, end = self._window(start)
        if ev.loki_url and svc.logql:
            with LokiClient(ev.loki_url, timeout=ev.timeout_seconds, tenant=ev.loki_tenant) as client:
                return gather_logs(
                    client,
                    svc.logql.replace("{service}", service),
                    begin,
                    end,
                    max_lines=ev.max_log_lines,
                    max_bytes=ev.max_log_bytes,
                    emails=ev.redact_emails,
                )
        if svc.log_command:
            if not SAFE_SERVICE.fullmatch(service):
                return EvidenceSection(
                    source="logs", status="skipped", message=f"service {service!r} is not safe in a command"
                )
            argv = [a.replace("{service}", service) for a in svc.log_command]
            env = {k: os.environ[k] for k in ("PATH", "LANG", "HOME") if k in os.environ}
            return gather_command_logs(
                argv,
                ev.timeout_seconds,
                env=env,
                max_lines=ev.max_log_lines,
                max_bytes=ev.max_log_bytes,
                emails=ev.redact_emails,
            )
        return EvidenceSection(source="logs", status="skipped", message="no log source configured")

    def _traces(self, service: str, start: datetime) -> EvidenceSection:
        from connectors.traces import JaegerClient, TempoClient, gather_traces

        ev = self.settings.evidence
        begin, end = self._window(start)
        ui = ev.traces_ui_url or None
        if ev.tempo_url:
            with TempoClient(ev.tempo_url, timeout=ev.timeout_seconds, ui_url=ev.traces_ui_url) as tempo:
                return gather_traces(tempo, service, begin, end, ui_url=ui)
        if ev.jaeger_url:
            with JaegerClient(ev.jaeger_url, timeout=ev.timeout_seconds, ui_url=ui) as jaeger:
                return gather_traces(jaeger, service, begin, end)
        return EvidenceSection(source="traces", status="skipped", message="no tracing backend configured")

    def _metrics(
        self, url: str | None, view: IncidentView, svc: ServiceEvidence, start: datetime
    ) -> EvidenceSection:
        from connectors.prometheus import PrometheusClient
        from investigation.graphs import gather_metrics

        queries: dict[str, str] = {}
        for alert in view.alerts[:3]:
            expr = alert_expression(alert.generatorURL)
            if expr:
                queries[f"alert expression ({alert.labels.get('alertname', '')})"] = expr
        for name, query in svc.golden_signals.items():
            queries[name] = query.replace("{service}", view.service)
        if not url:
            return EvidenceSection(source="metrics", status="skipped", message="no Prometheus configured")
        with PrometheusClient(url, timeout=self.settings.evidence.timeout_seconds) as client:
            return gather_metrics(
                client,
                queries,
                alert_start=start,
                before_seconds=self.settings.evidence.graph_window_seconds,
                min_step=self.settings.evidence.graph_min_step_seconds,
            )

    def _affected(self, url: str | None, view: IncidentView, svc: ServiceEvidence) -> EvidenceSection:
        from connectors.prometheus import PrometheusClient

        if not url or not svc.affected_users:
            return EvidenceSection(source="affected_users", status="skipped", message="no query configured")
        query = svc.affected_users.replace("{service}", view.service)
        with PrometheusClient(url, timeout=self.settings.evidence.timeout_seconds) as client:
            values = client.query(query)
        if not values:
            return EvidenceSection(source="affected_users", status="empty", query=query)
        return EvidenceSection(
            source="affected_users", status="ok", query=query, figures={"affected users": float(sum(values))}
        )

    def _changes(self, svc: ServiceEvidence, service: str, start: datetime) -> EvidenceSection:
        from investigation.changes import gather_changes

        repos: dict[str, Path] = {name: r.path for name, r in self.settings.remediation.repos.items()}
        repos.update(self.settings.evidence.change_repos)
        return gather_changes(
            repos,
            before=start,
            window_seconds=self.settings.evidence.change_window_seconds,
            service_paths=[p.replace("{service}", service) for p in svc.paths],
            emails=self.settings.evidence.redact_emails,
        )

    def _similar(self, view: IncidentView) -> EvidenceSection:
        from connectors.incident_store import gather_similar

        return gather_similar(self._store(), view)

    @activity.defn(name="gather_evidence")
    async def gather_evidence(self, req: EvidenceRequest) -> Evidence:
        """Gather, write the evidence into the ticket's description and attach the graphs."""
        view = req.view
        structlog.contextvars.bind_contextvars(incident_id=view.id)
        if not self.settings.evidence.enabled:
            return Evidence(incident_id=view.id, gathered_at=datetime.now(UTC))
        evidence = await asyncio.to_thread(self._gather, view)
        ticket = view.ticket

        def write() -> None:
            if ticket is None:
                return
            for section in evidence.sections:
                for i, series in enumerate(section.metrics):
                    if series.graph_png:
                        name = f"{view.id}-graph-{i + 1}.png"
                        self.tracker.attach(ticket.key, name, series.graph_png)
                        # The page embeds it by name, now and on every later rewrite.
                        series.graph = name
            self.tracker.update_page(
                ticket.key,
                TicketContent(
                    incident_id=view.id,
                    summary=(view.title or f"selfheal incident {view.id}").replace("\n", " ")[:250],
                    page=build_page(view.model_copy(update={"evidence": evidence}), req.workflow_url),
                    priority=self.policy.priority(view.severity),
                    labels=list(self.policy.labels),
                ),
            )

        await asyncio.to_thread(write)
        for section in evidence.sections:
            for series in section.metrics:
                series.graph_png = None
        log.info("evidence gathered", sources={s.source: s.status for s in evidence.sections})
        return evidence

    @activity.defn(name="record_incident")
    async def record_incident(self, view: IncidentView) -> None:
        """Remember a closed incident (its fix, how the loop did) for similar-incident search and metrics."""
        from connectors.incident_store import matched_playbook

        def run() -> None:
            playbook = matched_playbook(view)
            category = self.playbook_category(playbook) if playbook else ""
            self._store().record(view, category=category)

        await asyncio.to_thread(run)

    def all(self) -> list[Callable[..., object]]:
        return [self.gather_evidence, self.record_incident]
