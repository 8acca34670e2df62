"""The incident service: what the HTTP API and the CLI do with Temporal.

Ingest is signal-with-start on the alert group's workflow id, so a notification is durable
before we answer. Reads come from visibility and memo (no worker needed) or from the
workflow's query and result.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.client import (
    WorkflowExecutionStatus as ExecStatus,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from connectors.base import Tracker
from models import ids
from models.incident import (
    AlertmanagerWebhook,
    Decision,
    DecisionKind,
    IncidentSummary,
    IncidentView,
    Notification,
    RefusedDecision,
    WebhookAlert,
)
from models.incident_state import IncidentInput, IncidentPolicySnapshot
from selfheal.audit import audit
from selfheal.auth import Principal
from selfheal.settings import Settings
from workflows import incident_rules as rules
from workflows.incident import NOT_AWAITING, PLAN_CHANGED, IncidentWorkflow

log = structlog.get_logger(__name__)

#: Bytes of alerts one notification signal may carry: Temporal refuses payloads over 2 MiB by default
#: and the incident's state (all its alerts) travels through continue-as-new too.
SIGNAL_ALERT_BYTES = 1024 * 1024


def bounded(body: AlertmanagerWebhook, max_alerts: int, max_bytes: int) -> AlertmanagerWebhook:
    """The notification with at most `max_alerts` alerts (and `max_bytes` of them), the rest counted
    in `truncatedAlerts` as Alertmanager's own `max_alerts` does.

    Firing alerts are kept before resolved ones, then by fingerprint, so every re-send of a big
    group keeps the same alerts and the incident's view stays stable; the group's status is
    Alertmanager's, not recomputed from the alerts kept.
    """
    if len(body.alerts) <= max_alerts and sum(len(a.model_dump_json()) for a in body.alerts) <= max_bytes:
        return body
    kept: list[WebhookAlert] = []
    size = 0
    for alert in sorted(body.alerts, key=lambda a: (a.status != "firing", a.fingerprint)):
        if len(kept) >= max_alerts:
            break
        cost = len(alert.model_dump_json())
        if kept and size + cost > max_bytes:
            break
        kept.append(alert)
        size += cost
    dropped = len(body.alerts) - len(kept)
    return body.model_copy(update={"alerts": kept, "truncatedAlerts": body.truncatedAlerts + dropped})


_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@-]{1,200}$")


class IncidentError(Exception):
    """An error with the HTTP status the API answers with."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IncidentNotFound(IncidentError):
    status_code = 404


class NotAwaitingDecision(IncidentError):
    status_code = 409


class ApproverNotAllowed(IncidentError):
    status_code = 403


class PlanChanged(IncidentError):
    """The approval pinned a plan digest that is not the incident's current plan."""

    status_code = 409


class TemporalUnavailable(IncidentError):
    status_code = 503


class InvalidFilter(IncidentError):
    status_code = 422


@dataclass
class IngestResult:
    incident_id: str | None
    status: str
    group_id: str


#: Run ids whose incident id we already read: a run's `incident_id` memo never changes (a new incident
#: is a new run, and continue-as-new is a new run id too), so only a run's first notification pays the
#: extra describe round trip that ingest otherwise makes for every notification.
_RUN_CACHE_SIZE = 10_000

_UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


def _is_unavailable(err: BaseException) -> bool:
    if isinstance(err, RPCError):
        return err.status in _UNAVAILABLE
    # A lazy client that cannot connect raises a plain RuntimeError from the core bridge.
    return isinstance(err, RuntimeError) and "connect" in str(err).lower()


def policy_snapshot(settings: Settings) -> IncidentPolicySnapshot:
    """What a new incident workflow starts with: the `incident:` section whole, plus the few values
    it needs from other sections. Dumped from the settings model itself, so a field added to the
    section reaches the workflow without being listed here (`ticket_retry_seconds` is no setting)."""
    return IncidentPolicySnapshot(
        **settings.incident.model_dump(),
        ui_url=settings.temporal.ui_url,
        namespace=settings.temporal.namespace,
        lock_retry_seconds=settings.remediation.lock_retry_seconds,
        investigator=settings.investigation.investigator,
        coding_agent=settings.investigation.coding_agent.enabled,
    )


def check_approver(principal: Principal) -> None:
    """Decisions and resume need the approver role of the authenticated user (`auth.users`)."""
    if not principal.can("approver"):
        raise ApproverNotAllowed(
            f"user {principal.name!r} is not an approver (auth.users.{principal.name}.roles: [approver])"
        )


def _build_tracker(settings: Settings) -> Tracker:
    from selfheal.clients import build_tracker  # the worker's client module: only needed here

    return build_tracker(settings)


class IncidentService:
    def __init__(
        self, client: Client, settings: Settings, *, tracker: Callable[[], Tracker] | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        #: Only for telling a ticket why a decision did not count: the API's own tracker, or one
        #: built from the settings on first use.
        self._tracker = tracker or functools.cache(lambda: _build_tracker(settings))
        self.rpc_timeout = timedelta(seconds=settings.temporal.rpc_timeout_seconds)
        self._incident_by_run: OrderedDict[str, str] = OrderedDict()

    # --- ingest -----------------------------------------------------------------------------------

    async def ingest(self, body: AlertmanagerWebhook, received_at: datetime | None = None) -> IngestResult:
        gid = ids.group_id(body.receiver, body.groupKey)
        wid = ids.workflow_id_for_group(gid)
        body = bounded(body, self.settings.max_alerts_per_notification, SIGNAL_ALERT_BYTES)
        note = Notification(received_at=received_at or datetime.now(UTC), notification=body)
        firing = any(a.status == "firing" for a in body.alerts)
        try:
            if firing:
                new_id = ids.new_incident_id(gid)
                handle: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                    IncidentWorkflow.run,
                    IncidentInput(incident_id=new_id, group_id=gid, policy=policy_snapshot(self.settings)),
                    id=wid,
                    task_queue=self.settings.temporal.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    start_signal="notify",
                    start_signal_args=[note],
                    memo={"incident_id": new_id},
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(ids.SA_INCIDENT_ID, new_id),
                            SearchAttributePair(ids.SA_STAGE, "received"),
                            SearchAttributePair(ids.SA_STATUS, "firing"),
                        ]
                    ),
                    rpc_timeout=self.rpc_timeout,
                )
            else:
                handle = self.client.get_workflow_handle(wid)
                try:
                    await handle.signal("notify", note, rpc_timeout=self.rpc_timeout)
                except RPCError as err:
                    if err.status == RPCStatusCode.NOT_FOUND:
                        log.info("resolved notification with no open incident ignored", group_id=gid)
                        return IngestResult(incident_id=None, status="ignored", group_id=gid)
                    raise
            incident_id = await self._memo_incident_id(handle)
        except Exception as err:
            if _is_unavailable(err):
                raise TemporalUnavailable(f"Temporal is unreachable: {err}") from err
            raise
        log.info("notification recorded", incident_id=incident_id, group_id=gid, firing=firing)
        return IngestResult(incident_id=incident_id, status="accepted", group_id=gid)

    async def _memo_incident_id(self, handle: WorkflowHandle[Any, Any]) -> str | None:
        run_id = handle.result_run_id
        if run_id and run_id in self._incident_by_run:
            self._incident_by_run.move_to_end(run_id)
            return self._incident_by_run[run_id]
        desc = await handle.describe(rpc_timeout=self.rpc_timeout)
        memo = await desc.memo()
        value = memo.get("incident_id")
        if not value:
            return None
        if run_id and desc.run_id == run_id:
            self._incident_by_run[run_id] = str(value)
            if len(self._incident_by_run) > _RUN_CACHE_SIZE:
                self._incident_by_run.popitem(last=False)
        return str(value)

    # --- reads ------------------------------------------------------------------------------------

    async def list(
        self,
        *,
        status: str | None = None,
        stage: str | None = None,
        service: str | None = None,
        alertname: str | None = None,
        limit: int = 100,
    ) -> list[IncidentSummary]:
        clauses = ["WorkflowType = 'IncidentWorkflow'"]
        for key, value in (
            (ids.SA_STATUS, status),
            (ids.SA_STAGE, stage),
            (ids.SA_SERVICE, service),
            (ids.SA_ALERTNAME, alertname),
        ):
            if value is not None:
                if not _SAFE_VALUE.match(value):
                    raise InvalidFilter(f"invalid filter value {value!r}")
                clauses.append(f"{key.name} = '{value}'")
        query = " AND ".join(clauses)
        out: list[IncidentSummary] = []
        seen: set[str] = set()
        try:
            async for wf in self.client.list_workflows(query, rpc_timeout=self.rpc_timeout):
                if wf.status == ExecStatus.CONTINUED_AS_NEW:
                    continue
                summary = await _summary(wf)
                if summary is None or summary.id in seen:
                    continue
                seen.add(summary.id)
                out.append(summary)
                if len(out) >= limit:
                    break
        except RPCError as err:
            if _is_unavailable(err):
                raise TemporalUnavailable(f"Temporal is unreachable: {err}") from err
            raise
        out.sort(key=lambda s: s.opened_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        return out

    async def _find(self, incident_id: str) -> tuple[WorkflowHandle[Any, Any], bool]:
        """The run holding this incident and whether it is still running."""
        gid = ids.parse_incident_id(incident_id)
        if gid is None:
            raise IncidentNotFound(f"no incident {incident_id!r}")
        wid = ids.workflow_id_for_group(gid)
        try:
            handle = self.client.get_workflow_handle(wid)
            try:
                desc = await handle.describe(rpc_timeout=self.rpc_timeout)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    raise IncidentNotFound(f"no incident {incident_id!r}") from err
                raise
            memo = await desc.memo()
            if memo.get("incident_id") == incident_id:
                running = desc.status == ExecStatus.RUNNING
                return self.client.get_workflow_handle_for(
                    IncidentWorkflow.run, wid, run_id=desc.run_id
                ), running
            query = f"WorkflowId = '{wid}' AND {ids.SA_INCIDENT_ID.name} = '{incident_id}'"
            async for wf in self.client.list_workflows(query, rpc_timeout=self.rpc_timeout):
                if wf.status in (ExecStatus.COMPLETED, ExecStatus.RUNNING):
                    return (
                        self.client.get_workflow_handle_for(IncidentWorkflow.run, wid, run_id=wf.run_id),
                        wf.status == ExecStatus.RUNNING,
                    )
        except RPCError as err:
            if _is_unavailable(err):
                raise TemporalUnavailable(f"Temporal is unreachable: {err}") from err
            raise
        raise IncidentNotFound(f"no incident {incident_id!r}")

    async def get(self, incident_id: str) -> IncidentView:
        handle, running = await self._find(incident_id)
        try:
            if running:
                view: IncidentView = await handle.query(IncidentWorkflow.view, rpc_timeout=self.rpc_timeout)
                return view
            result: IncidentView = await handle.result(rpc_timeout=self.rpc_timeout)
            return result
        except RPCError as err:
            if _is_unavailable(err):
                raise TemporalUnavailable(
                    f"incident {incident_id} did not answer (is a worker running?): {err}"
                ) from err
            raise

    # --- decisions --------------------------------------------------------------------------------

    async def decide(
        self,
        incident_id: str,
        decision: Decision,
        principal: Principal,
        *,
        update_id: str | None = None,
        origin: str = "",
    ) -> IncidentView:
        """Record `principal`'s decision. The decider is the authenticated principal: `decision.by`
        is overwritten with its name. Audited whatever the outcome (a refusal included)."""
        decision = decision.model_copy(update={"by": principal.name})
        fields = {"incident_id": incident_id, "decision": decision.decision.value, "source": decision.source}

        async def refuse(reason: str) -> None:
            await self.record_refusal(
                incident_id,
                decision.decision,
                by=principal.name,
                via=decision.source,
                reason=reason,
                dedup=update_id or uuid.uuid4().hex,
                principal=principal,
                origin=origin,
                source=decision.source,
            )

        try:
            check_approver(principal)
        except ApproverNotAllowed as err:
            await refuse(err.message)
            raise
        try:
            view = await self._decide(incident_id, decision, update_id)
        except PlanChanged as err:
            # Said where humans look, like any refusal: a changed plan needs a new approval.
            await refuse(err.message)
            raise
        except IncidentError as err:
            audit(
                "decision",
                principal,
                origin,
                "not_accepted",
                status=err.status_code,
                reason=err.message,
                **fields,
            )
            raise
        audit("decision", principal, origin, "accepted", **fields)
        return view

    async def record_refusal(
        self,
        incident_id: str,
        decision: DecisionKind,
        *,
        by: str,
        via: str,
        reason: str,
        dedup: str,
        principal: Principal | None,
        origin: str,
        source: str,
        ticket_key: str | None = None,
    ) -> None:
        """A decision that did not count, said everywhere a human looks: the audit trail, the
        incident's timeline, and the ticket (someone deciding in Jira never sees a 403). Once per
        `dedup` (a redelivery adds nothing); best effort past the audit line, since the refusal
        stands either way."""
        audit(
            "decision",
            principal,
            origin,
            "refused",
            incident_id=incident_id,
            decision=decision.value,
            source=source,
            reason=reason,
        )
        refused = RefusedDecision(decision=decision, by=by, via=via, reason=reason, dedup=dedup[:200])
        try:
            handle, running = await self._find(incident_id)
            if running:
                await handle.signal(IncidentWorkflow.decision_refused, refused, rpc_timeout=self.rpc_timeout)
        except (IncidentError, RPCError) as err:
            log.warning("refusal not on the timeline", incident_id=incident_id, error=str(err)[:300])
        key = ticket_key
        if key is None:
            try:
                key = (await self.get(incident_id)).ticket.key  # type: ignore[union-attr]
            except (IncidentError, AttributeError):
                return
        try:
            tracker = self._tracker()
            body = rules.refusal_text(refused)
            await asyncio.to_thread(tracker.comment, key, body, f"{incident_id}:refused:{dedup}")
        except Exception as err:  # the tracker's failure must not turn a refusal into a 500
            log.warning("refusal comment failed", incident_id=incident_id, error=str(err)[:300])

    async def _decide(self, incident_id: str, decision: Decision, update_id: str | None) -> IncidentView:
        handle, running = await self._find(incident_id)
        if not running:
            raise NotAwaitingDecision(f"incident {incident_id} is closed, not awaiting a decision")
        try:
            view: IncidentView = await handle.execute_update(
                IncidentWorkflow.decide,
                decision,
                id=update_id,
                rpc_timeout=timedelta(seconds=max(30.0, self.rpc_timeout.total_seconds())),
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == NOT_AWAITING:
                raise NotAwaitingDecision(cause.message) from err
            if isinstance(cause, ApplicationError) and cause.type == PLAN_CHANGED:
                raise PlanChanged(cause.message) from err
            raise
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotAwaitingDecision(f"incident {incident_id} closed: not awaiting a decision") from err
            if _is_unavailable(err):
                raise TemporalUnavailable(
                    f"incident {incident_id} did not accept the decision in time (is a worker running?)"
                ) from err
            raise
        log.info(
            "decision accepted", incident_id=incident_id, decision=decision.decision.value, by=decision.by
        )
        return view


async def _summary(wf: WorkflowExecution) -> IncidentSummary | None:
    memo = await wf.memo()
    sa = wf.typed_search_attributes
    incident_id = memo.get("incident_id") or sa.get(ids.SA_INCIDENT_ID)
    if not incident_id:
        return None
    stage = sa.get(ids.SA_STAGE) or "received"
    if wf.status not in (ExecStatus.RUNNING, ExecStatus.COMPLETED) and wf.status is not None:
        stage = wf.status.name.lower()
    return IncidentSummary(
        id=str(incident_id),
        stage=stage,
        status=sa.get(ids.SA_STATUS) or "firing",
        outcome=memo.get("outcome"),
        service=sa.get(ids.SA_SERVICE) or "",
        severity=sa.get(ids.SA_SEVERITY) or "",
        alertname=sa.get(ids.SA_ALERTNAME) or "",
        title=memo.get("title") or "",
        opened_at=memo.get("opened_at") or wf.start_time,
        closed_at=wf.close_time,
        ticket_key=memo.get("ticket_key"),
        ticket_url=memo.get("ticket_url"),
    )
