"""Worker wiring: the tracker chosen by settings, injected into the ticket activities.

The LLM investigator (InvestigationAgentWorkflow, its model/tool activities and pydantic-ai's
Temporal plugin) is registered on every worker, whatever `investigation.investigator` says: an
incident started while the setting was `llm` must find its child workflow type on whichever
worker picks it up, or it would wait forever on an unregistered type; unused, it costs only the
import. Its settings reach its activities through `register_runtime` (per task queue), never
through workflow history.
"""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

if TYPE_CHECKING:
    from pydantic_ai.models import Model

from activities.evidence import EvidenceActivities
from activities.investigation import InvestigationActivities
from activities.remediation import RemediationActivities
from activities.tickets import TicketActivities, TicketPolicy
from connectors.base import Tracker
from connectors.incident_store import LazyIncidentStore
from connectors.local_tracker import LocalTracker
from connectors.loki import LokiClient
from connectors.prometheus import PrometheusClient
from connectors.temporal import connect, ensure_search_attributes
from connectors.traces import JaegerClient, TempoClient, TraceSearcher
from investigation.sources import EvidenceSource, build_evidence_sources
from selfheal.settings import ConfigError, Settings
from workflows.control import ControlWorkflow
from workflows.incident import IncidentWorkflow
from workflows.remediation import RemediationWorkflow

log = structlog.get_logger(__name__)


def build_tracker(settings: Settings) -> Tracker:
    if settings.tracker.kind == "jira":
        if settings.tracker.jira is None:
            raise ConfigError("settings: tracker.jira: required when tracker.kind is 'jira'")
        from connectors.jira.tracker import JiraTracker

        return JiraTracker(settings.tracker.jira)
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return LocalTracker(settings.local_db_path, base_url=base)


def build_sources(settings: Settings, store: LazyIncidentStore) -> list[EvidenceSource]:
    """The evidence sources with their clients, one of each per worker (`evidence:` settings)."""
    ev = settings.evidence
    timeout = ev.timeout_seconds
    prom_url = ev.prometheus_url or settings.remediation.prometheus_url
    traces: TraceSearcher | None = None
    if ev.tempo_url:
        traces = TempoClient(ev.tempo_url, timeout=timeout, ui_url=ev.traces_ui_url)
    elif ev.jaeger_url:
        traces = JaegerClient(ev.jaeger_url, timeout=timeout, ui_url=ev.traces_ui_url or None)
    repos: dict[str, Path] = {name: r.path for name, r in settings.remediation.repos.items()}
    repos.update(ev.change_repos)
    return build_evidence_sources(
        ev,
        prometheus=PrometheusClient(prom_url, timeout=timeout) if prom_url else None,
        loki=LokiClient(ev.loki_url, timeout=timeout, tenant=ev.loki_tenant) if ev.loki_url else None,
        traces=traces,
        repos=repos,
        store=store,
    )


def with_pydantic_ai(client: Client) -> Client:
    """The same connection with pydantic-ai's Temporal plugin (its payload converter, sandbox
    passthrough and failure types), which the agent's activities and messages need."""
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    config = client.config()
    if any(isinstance(p, PydanticAIPlugin) for p in config["plugins"]):
        return client
    config["plugins"] = [*config["plugins"], PydanticAIPlugin()]
    return Client(**config)


def build_worker(
    client: Client, settings: Settings, tracker: Tracker | None = None, *, llm_model: Model | None = None
) -> Worker:
    """The worker for every workflow and activity; `llm_model` replaces the configured LLM (tests)."""
    from activities.agent_tools import AgentActivities, register_runtime
    from workflows.investigation_agent import InvestigationAgentWorkflow

    tracker = tracker or build_tracker(settings)
    policy = TicketPolicy(settings.tracker.jira)
    tickets = TicketActivities(tracker, policy)
    remediation = RemediationActivities(settings, client)
    store = LazyIncidentStore(settings.store_url)
    evidence = EvidenceActivities(
        build_sources(settings, store), tracker, policy, store, remediation.playbook_category
    )
    investigation = InvestigationActivities(settings)
    agent = AgentActivities(settings)
    register_runtime(settings, llm_model)
    return Worker(
        with_pydantic_ai(client),
        task_queue=settings.temporal.task_queue,
        workflows=[IncidentWorkflow, RemediationWorkflow, ControlWorkflow, InvestigationAgentWorkflow],
        activities=[*tickets.all(), *remediation.all(), *evidence.all(), *investigation.all(), *agent.all()],
        max_cached_workflows=settings.temporal.max_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.temporal.sticky_timeout_seconds),
    )


def _warm_up_graphs() -> None:
    """Render one throwaway graph, so the first incident does not pay matplotlib's start-up (~3 s)."""
    from datetime import UTC, datetime

    from investigation.graphs import render_graph
    from models.evidence import MetricSeries

    now = datetime.now(UTC)
    render_graph(
        MetricSeries(name="warm-up", query="", points=[(now.timestamp() - 60, 0.0), (now.timestamp(), 1.0)]),
        alert_start=now,
        title="warm-up",
    )


async def run_worker(settings: Settings) -> None:
    """The production worker process: runs until SIGINT/SIGTERM, then drains."""
    tracker = build_tracker(settings)
    client = await connect(settings.temporal)
    try:
        added = await ensure_search_attributes(client, settings.temporal.namespace)
        if added:
            log.info("registered search attributes", names=added)
    except Exception as err:  # a Cloud namespace may forbid it; they must then be created by an admin
        log.warning("could not check search attributes", error=str(err))
    worker = build_worker(client, settings, tracker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.temporal.worker_threads, thread_name_prefix="activity")
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settings.evidence.enabled:
        await asyncio.to_thread(_warm_up_graphs)
    log.info("worker started", task_queue=settings.temporal.task_queue, tracker=tracker.name)
    async with worker:
        await stop.wait()
        log.info("worker stopping")
