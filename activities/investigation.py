"""The builtin investigator as an activity: run the matched playbook's diagnose checks, then reason.

The reasoning itself (`investigation.builtin.investigate`) is pure; this activity only adds the
Prometheus reads the diagnose checks need, from the playbooks' Prometheus (`remediation.prometheus_url`,
the one their checks and verification query too). A check that cannot run is recorded, never raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from temporalio import activity

from investigation.builtin import investigate
from models.investigation import DiagnoseResult, Investigation
from models.remediation import InvestigationRequest
from pages.redact import cap, redact

if TYPE_CHECKING:
    from connectors.prometheus import PrometheusClient

log = structlog.get_logger(__name__)


class InvestigationActivities:
    def __init__(self, prometheus: PrometheusClient | None) -> None:
        #: The playbooks' Prometheus; None when `remediation.prometheus_url` is not configured.
        self.prometheus = prometheus

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
        result = investigate(req.view, req.match, diagnose, started_at=started)
        log.info(
            "investigated",
            top=result.hypotheses[0].title if result.hypotheses else None,
            playbook=result.matched_playbook,
            seconds=round(result.duration_seconds, 3),
        )
        return result

    def all(self) -> list[Callable[..., object]]:
        return [self.investigate]
