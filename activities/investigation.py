"""The builtin investigator as an activity: run the matched playbook's diagnose checks, then reason.

The reasoning itself (`investigation.builtin.investigate`) is pure; this activity only adds the
Prometheus reads the diagnose checks need, from the playbooks' Prometheus (`remediation.prometheus_url`,
the one their checks and verification query too), and the reads of the playbook's informational
`diagnostics` (query values, an object's recent events). A read that fails is recorded, never raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from temporalio import activity

from investigation.builtin import investigate
from models.investigation import DiagnoseResult, DiagnosticResult, Investigation
from models.remediation import InvestigationRequest
from pages.redact import cap, redact

if TYPE_CHECKING:
    from connectors.kube.verbs import KubeActions
    from connectors.prometheus import PrometheusClient

log = structlog.get_logger(__name__)


class InvestigationActivities:
    def __init__(self, prometheus: PrometheusClient | None, kube: KubeActions | None = None) -> None:
        #: The playbooks' Prometheus; None when `remediation.prometheus_url` is not configured.
        self.prometheus = prometheus
        #: The cluster, for diagnostics that read events; None without a `kube:` section.
        self.kube = kube

    def _diagnostics(self, req: InvestigationRequest) -> list[DiagnosticResult]:
        """The matched playbook's diagnostics, each read on its own: one that fails says why."""
        plan = req.match.plan if req.match is not None else None
        if plan is None:
            return []
        out: list[DiagnosticResult] = []
        for diag in plan.diagnostics:
            if diag.query is not None:
                result = DiagnosticResult(playbook=plan.playbook, name=diag.name, source=diag.query)
                if self.prometheus is None:
                    result.error = "no Prometheus configured"
                else:
                    try:
                        values = self.prometheus.query(diag.query)
                        result.lines = [f"{v:g}" for v in values[:20]] or ["no data"]
                    except Exception as err:  # informational: a failed read is reported, not raised
                        result.error = cap(redact(f"{type(err).__name__}: {err}"), 300)
            else:
                ref = diag.kube_events or {}
                kind, namespace, name = ref.get("kind", ""), ref.get("namespace", ""), ref.get("name", "")
                where = f"{namespace}/{name}" if namespace else name
                result = DiagnosticResult(
                    playbook=plan.playbook, name=diag.name, source=f"events of {kind} {where}"
                )
                if self.kube is None:
                    result.error = "no kube: section configured"
                else:
                    try:
                        result.lines = [
                            cap(redact(line), 300) for line in self.kube.events(kind, namespace, name)
                        ] or ["no events"]
                    except Exception as err:
                        result.error = cap(redact(f"{type(err).__name__}: {err}"), 300)
            out.append(result)
        return out

    def _diagnose(self, req: InvestigationRequest) -> list[DiagnoseResult]:
        plan = req.match.plan if req.match is not None else None
        if plan is None or not plan.diagnose:
            return []
        prom = self.prometheus
        results: list[DiagnoseResult] = []
        if prom is None:
            return [
                DiagnoseResult(
                    playbook=plan.playbook,
                    name=c.name,
                    query=c.query,
                    condition=c.condition,
                    error="no Prometheus configured",
                )
                for c in plan.diagnose
            ]
        for check in plan.diagnose:
            result = DiagnoseResult(
                playbook=plan.playbook, name=check.name, query=check.query, condition=check.condition
            )
            try:
                values = prom.query(check.query)
            except Exception as err:  # a diagnose read that fails is an open question, not a crash
                result.error = cap(redact(f"{type(err).__name__}: {err}"), 300)
            else:
                if values:
                    result.value = max(values)
                    result.passed = prom.check(check.condition, values)
                else:
                    result.error = "no data"
            results.append(result)
        return results

    @activity.defn(name="investigate")
    async def investigate(self, req: InvestigationRequest) -> Investigation:
        structlog.contextvars.bind_contextvars(incident_id=req.view.id)
        started = datetime.now(UTC)
        diagnose = await asyncio.to_thread(self._diagnose, req)
        diagnostics = await asyncio.to_thread(self._diagnostics, req)
        result = investigate(req.view, req.match, diagnose, started_at=started)
        result.diagnostics = diagnostics
        log.info(
            "investigated",
            top=result.hypotheses[0].title if result.hypotheses else None,
            playbook=result.matched_playbook,
            seconds=round(result.duration_seconds, 3),
        )
        return result

    def all(self) -> list[Callable[..., object]]:
        return [self.investigate]
