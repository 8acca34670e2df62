"""Worker wiring: the clients built from settings (`selfheal/clients.py`), handed to the activities.

Activities get their clients and their own settings section through their constructors, never the
whole `Settings` (the evidence activities still do, until they are split into sources).

The LLM investigator (InvestigationAgentWorkflow, its model/tool activities and pydantic-ai's
Temporal plugin) is registered on every worker, whatever `investigation.investigator` says: an
incident started while the setting was `llm` must find its child workflow type on whichever
worker picks it up, or it would wait forever on an unregistered type; unused, it costs only the
import. Its clients reach its activities through `register_runtime` (per task queue), never
through workflow history.
"""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

if TYPE_CHECKING:
    from pydantic_ai.models import Model

from activities.drafts import DraftActivities
from activities.evidence import EvidenceActivities
from activities.gitops import GitopsActivities
from activities.investigation import InvestigationActivities
from activities.proposals import ProposalActivities
from activities.remediation import RemediationActivities
from activities.tickets import TicketActivities, TicketPolicy
from connectors.base import Tracker
from connectors.temporal import connect, ensure_search_attributes
from investigation.sources import build_evidence_sources
from selfheal.clients import Clients, coding_run_config, llm_run_config
from selfheal.settings import Settings
from workflows.control import ControlWorkflow
from workflows.incident import IncidentWorkflow
from workflows.remediation import RemediationWorkflow

log = structlog.get_logger(__name__)


def with_pydantic_ai(client: Client) -> Client:
    """The same connection with pydantic-ai's Temporal plugin (its payload converter, sandbox
    passthrough and failure types), which the agent's activities and messages need."""
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    config = client.config()
    if any(isinstance(p, PydanticAIPlugin) for p in config["plugins"]):
        return client
    config["plugins"] = [*config["plugins"], PydanticAIPlugin()]
    return Client(**config)


def remediation_activities(client: Client, settings: Settings, clients: Clients) -> RemediationActivities:
    """The remediation activities with their section, the worker's paths and the playbooks' clients."""
    return RemediationActivities(
        settings.remediation,
        client,
        temporal=settings.temporal,
        open_repo=clients.open_repo,
        worktrees_dir=settings.worktrees_dir,
        data_dir=settings.data_dir,
        public_url=settings.public_url,
        prometheus=clients.prometheus,
        alertmanager=clients.alertmanager,
        sandbox_hidden=settings.sandbox_hidden(),
        secret_values=settings.secret_values(),
        kube=clients.kube(),
    )


def build_worker(
    client: Client,
    settings: Settings,
    tracker: Tracker | None = None,
    *,
    llm_model: Model | None = None,
    coding_model: Model | None = None,
    clients: Clients | None = None,
) -> Worker:
    """The worker for every workflow and activity, with `clients` (built from `settings` when not
    given; `tracker`, `llm_model` and `coding_model` then replace the configured ones, for tests)."""
    from activities.agent_tools import AgentActivities
    from activities.coding import CodingActivities
    from investigation.agent import investigation_agent
    from investigation.coding_agent import coding_agent
    from investigation.coding_tools import register_coding_runtime
    from investigation.live_tools import register_runtime
    from workflows.coding_agent import CodingAgentWorkflow
    from workflows.investigation_agent import InvestigationAgentWorkflow

    investigation_agent()  # built here, in worker setup: pydantic-ai forbids building it in a workflow
    coding_agent()

    clients = clients or Clients(settings, tracker=tracker, llm_model=llm_model, coding_model=coding_model)
    tracker = clients.tracker
    policy = TicketPolicy(settings.tracker.jira)
    tickets = TicketActivities(tracker, policy)
    remediation = remediation_activities(client, settings, clients)
    evidence = EvidenceActivities(
        build_evidence_sources(
            settings.evidence,
            prometheus=clients.evidence_prometheus,
            loki=clients.loki,
            traces=clients.traces,
            repos=clients.repo_paths,
            store=clients.incident_store,
        ),
        tracker,
        policy,
        clients.incident_store,
        remediation.playbook_category,
    )
    gitops = GitopsActivities(
        settings.gitops,
        open_repo=clients.open_repo,
        worktrees_dir=settings.worktrees_dir,
        forge=clients.forge,
        argocd=clients.argocd,
        flux=clients.flux,
        secret_values=settings.secret_values(),
    )
    investigation = InvestigationActivities(clients.prometheus, clients.kube())
    proposals = ProposalActivities(
        settings.remediation, open_repo=clients.open_repo, public_url=settings.public_url
    )
    agent = AgentActivities(llm_run_config(settings), clients.incident_store)
    drafts = DraftActivities(
        settings.remediation,
        tracker=tracker,
        store=clients.incident_store,
        open_repo=clients.open_repo,
        playbook_names=lambda: list(remediation.playbook_set().by_name),
        kube_namespaces=settings.kube.namespaces if settings.kube is not None else None,
        public_url=settings.public_url,
        forge=clients.forge,
    )
    register_runtime(settings.temporal.task_queue, clients.llm_runtime())
    coding = CodingActivities(
        coding_run_config(settings),
        settings.remediation,
        register_coding_runtime(settings.temporal.task_queue, clients.coding_runtime()),
        open_repo=clients.open_repo,
        public_url=settings.public_url,
    )
    return Worker(
        with_pydantic_ai(client),
        task_queue=settings.temporal.task_queue,
        workflows=[
            IncidentWorkflow,
            RemediationWorkflow,
            ControlWorkflow,
            InvestigationAgentWorkflow,
            CodingAgentWorkflow,
        ],
        activities=[
            *tickets.all(),
            *remediation.all(),
            *gitops.all(),
            *evidence.all(),
            *investigation.all(),
            *agent.all(),
            *proposals.all(),
            *coding.all(),
            *drafts.all(),
        ],
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
    clients = Clients(settings)
    try:
        await _serve(settings, clients)
    finally:
        clients.close()


async def _serve(settings: Settings, clients: Clients) -> None:
    client = await connect(settings.temporal)
    try:
        added = await ensure_search_attributes(client, settings.temporal.namespace)
        if added:
            log.info("registered search attributes", names=added)
    except Exception as err:  # a Cloud namespace may forbid it; they must then be created by an admin
        log.warning("could not check search attributes", error=str(err))
    worker = build_worker(client, settings, clients=clients)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.temporal.worker_threads, thread_name_prefix="activity")
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settings.evidence.enabled:
        await asyncio.to_thread(_warm_up_graphs)
    log.info("worker started", task_queue=settings.temporal.task_queue, tracker=clients.tracker.name)
    async with worker:
        await stop.wait()
        log.info("worker stopping")
