"""Ticket activities: thin wrappers that turn workflow requests into tracker calls.

The tracker is injected (Jira or local), so tests and production share this code. Tracker
errors that retrying cannot fix become non-retryable ApplicationErrors; the workflow records them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.base import TicketContent, Tracker, TrackerError
from connectors.jira.settings import JiraSettings
from models.incident import IncidentView, TicketRef
from models.tickets import (
    CommentRequest,
    EscalationRequest,
    EvidenceRequest,
    OpenTicketRequest,
    TransitionRequest,
)
from pages.ticket import build_page

log = structlog.get_logger(__name__)
T = TypeVar("T")


class TicketPolicy:
    """Priorities, escalation labels and the done status, taken from the Jira settings shape."""

    def __init__(self, jira: JiraSettings | None) -> None:
        cfg = jira or JiraSettings(url="local", project="LOCAL")
        self.priority_map = {k.lower(): v for k, v in cfg.priority_map.items()}
        self.default_priority = cfg.default_priority
        self.order = cfg.priority_order
        self.escalation_labels = cfg.escalation_labels
        self.assignee = cfg.escalation_assignee
        self.done_status = cfg.done_status
        self.labels = cfg.labels if jira is None else []

    def priority(self, severity: str, level: int = 0) -> str:
        base = self.priority_map.get(severity.lower(), self.default_priority)
        if base not in self.order:
            return base
        return self.order[min(self.order.index(base) + level, len(self.order) - 1)]


def page_content(view: IncidentView, workflow_url: str, policy: TicketPolicy) -> TicketContent:
    """The ticket's summary and page as the view stands (what a page rewrite sends)."""
    return TicketContent(
        incident_id=view.id,
        summary=(view.title or f"selfheal incident {view.id}").replace("\n", " ")[:250],
        page=build_page(view, workflow_url),
        priority=policy.priority(view.severity, view.escalations),
        labels=list(policy.labels),
    )


class TicketActivities:
    def __init__(self, tracker: Tracker, policy: TicketPolicy) -> None:
        self.tracker = tracker
        self.policy = policy

    async def _call(self, fn: Callable[[], T], what: str, incident_id: str) -> T:
        structlog.contextvars.bind_contextvars(incident_id=incident_id or None)
        try:
            return await asyncio.to_thread(fn)
        except TrackerError as err:
            log.warning("tracker call failed", call=what, error=str(err), retryable=err.retryable)
            raise ApplicationError(
                f"{what}: {err}",
                type="TrackerError" if err.retryable else "TrackerRejected",
                non_retryable=not err.retryable,
            ) from err

    @activity.defn(name="open_ticket")
    async def open_ticket(self, req: OpenTicketRequest) -> TicketRef:
        """Search by the incident label, then create or update: a retry never makes a second ticket."""
        view = req.view
        content = TicketContent(
            incident_id=view.id,
            summary=(view.title or f"selfheal incident {view.id}").replace("\n", " ")[:250],
            page=build_page(view, req.workflow_url),
            priority=self.policy.priority(view.severity),
            labels=list(self.policy.labels),
            link_url=req.workflow_url or None,
            link_title=f"selfheal incident {view.id} (Temporal)",
        )
        ref = await self._call(lambda: self.tracker.create_or_update(content), "open_ticket", view.id)
        log.info("ticket ready", incident_id=view.id, key=ref.key)
        return ref

    @activity.defn(name="escalate_ticket")
    async def escalate_ticket(self, req: EscalationRequest) -> None:
        priority = self.policy.priority(req.severity, req.level)

        def run() -> None:
            self.tracker.set_priority(req.key, priority)
            if self.policy.escalation_labels:
                self.tracker.add_labels(req.key, self.policy.escalation_labels)
            if self.policy.assignee:
                # The tracker's own id for a person: accountId on Jira Cloud, user name on Server/DC.
                self.tracker.assign(req.key, self.policy.assignee)
            body = (
                f"Escalated (priority {priority}). {req.reason}\n"
                f"To decide: comment /selfheal approve or /selfheal reject, or run"
                f" selfheal approve|reject {req.incident_id} (as yourself: your API token)."
            )
            self.tracker.comment(req.key, body, req.dedup_key)

        await self._call(run, "escalate_ticket", req.incident_id)
        log.info("ticket escalated", incident_id=req.incident_id, key=req.key, priority=priority)

    @activity.defn(name="comment_ticket")
    async def comment_ticket(self, req: CommentRequest) -> bool:
        return await self._call(
            lambda: self.tracker.comment(req.key, req.body, req.dedup_key), "comment_ticket", req.incident_id
        )

    @activity.defn(name="transition_ticket")
    async def transition_ticket(self, req: TransitionRequest) -> bool:
        status = self.policy.done_status if req.to_done else (req.status or self.policy.done_status)
        return await self._call(
            lambda: self.tracker.transition(req.key, status), "transition_ticket", req.incident_id
        )

    @activity.defn(name="update_ticket_page")
    async def update_ticket_page(self, req: EvidenceRequest) -> None:
        """Rewrite the ticket's description from the view, so updates edit sections in place."""
        view = req.view
        if view.ticket is None:
            return
        content = page_content(view, req.workflow_url, self.policy)
        key = view.ticket.key
        await self._call(lambda: self.tracker.update_page(key, content), "update_ticket_page", view.id)

    def all(self) -> list[Callable[..., object]]:
        return [
            self.open_ticket,
            self.escalate_ticket,
            self.comment_ticket,
            self.transition_ticket,
            self.update_ticket_page,
        ]
