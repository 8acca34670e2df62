"""Evidence activities: gather what each configured source knows about an incident, write it to
the ticket (graphs attached), and remember closed incidents for the next similar one.

The sources (`investigation.sources`, built by the worker with their clients) are optional and
bounded; a failing source becomes a `failed` section, never a failed incident. Graph PNGs go
straight to the ticket and are stripped from the result, so workflow history stays small.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.tickets import TicketPolicy, page_content
from connectors.base import TicketContent, Tracker, TrackerError
from investigation.sources import EvidenceSource
from models.evidence import Evidence
from models.incident import IncidentView
from models.tickets import CloseRequest, CloseResult, EvidenceRequest
from pages.ticket import build_page

if TYPE_CHECKING:
    from connectors.incident_store import IncidentStore

log = structlog.get_logger(__name__)


class EvidenceActivities:
    def __init__(
        self,
        sources: Sequence[EvidenceSource],
        tracker: Tracker,
        policy: TicketPolicy,
        store: Callable[[], IncidentStore],
        playbook_category: Callable[[str], str] | None = None,
    ) -> None:
        #: In ticket order; empty when evidence is disabled (nothing gathered, the ticket untouched).
        self.sources = list(sources)
        self.tracker = tracker
        self.policy = policy
        #: Opens the worker's one incident store on first use (closed incidents are recorded there).
        self.store = store
        #: Looks up a playbook's `category:` by name, for the loop's metrics.
        self.playbook_category = playbook_category or (lambda _name: "")

    def _gather(self, view: IncidentView) -> Evidence:
        sections = [source.gather(view) for source in self.sources]
        return Evidence(incident_id=view.id, gathered_at=datetime.now(UTC), sections=sections)

    @activity.defn(name="gather_evidence")
    async def gather_evidence(self, req: EvidenceRequest) -> Evidence:
        """Gather, write the evidence into the ticket's description and attach the graphs."""
        view = req.view
        structlog.contextvars.bind_contextvars(incident_id=view.id)
        if not self.sources:
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
        await asyncio.to_thread(self._record, view)

    @activity.defn(name="close_incident")
    async def close_incident(self, req: CloseRequest) -> CloseResult:
        """Close out in one activity what took four: comment why, rewrite the page, move the ticket
        to done, record the incident. Every part is idempotent (dedup marker, same page, same
        status, insert-or-replace), so a retry repeats them harmlessly. A tracker error that
        retrying cannot fix is returned for the timeline while the other parts still run; any
        other failure raises after the rest ran, and the activity is retried."""
        view = req.page.view
        structlog.contextvars.bind_contextvars(incident_id=view.id)
        comment = req.comment
        failed: list[str] = []
        retry: list[str] = []

        def part(name: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except TrackerError as err:
                (retry if err.retryable else failed).append(f"{name}: {err}")
            except Exception as err:  # the store, or a tracker bug: retried like a transient failure
                retry.append(f"{name}: {type(err).__name__}: {err}")

        def run() -> None:
            key = comment.key
            part("comment", lambda: self.tracker.comment(key, comment.body, comment.dedup_key))
            content = page_content(view, req.page.workflow_url, self.policy)
            part("page", lambda: self.tracker.update_page(key, content))
            part("transition", lambda: self.tracker.transition(key, self.policy.done_status))
            part("record", lambda: self._record(view))

        await asyncio.to_thread(run)
        if retry:
            log.warning("close-out incomplete, retrying", failed=retry)
            raise ApplicationError("close-out incomplete: " + "; ".join(retry), type="TrackerError")
        return CloseResult(failed=failed)

    def _record(self, view: IncidentView) -> None:
        from connectors.incident_store import matched_playbook

        playbook = matched_playbook(view)
        category = self.playbook_category(playbook) if playbook else ""
        self.store().record(view, category=category)

    def all(self) -> list[Callable[..., object]]:
        return [self.gather_evidence, self.record_incident, self.close_incident]
