"""What every route shares, built once per app by `create_app` and read from the request.

Settings and the loop's metrics registry exist from construction; the Temporal client and the
incident service only once the lifespan has connected, as before the split into routers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry
from temporalio.client import Client

from connectors.base import Tracker
from connectors.incident_store import LazyIncidentStore
from selfheal.clients import build_tracker
from selfheal.incidents import IncidentService
from selfheal.loop_metrics import LoopCollector, OpenIncidentsCollector
from selfheal.settings import Settings


@dataclass(frozen=True)
class Shared:
    settings: Settings
    #: The loop's metrics come from durable data at scrape time, in a registry of this app's own.
    loop_collector: LoopCollector
    open_incidents: OpenIncidentsCollector
    loop_registry: CollectorRegistry
    #: Closed incidents, for "similar incidents" (opened on first use, like the worker's).
    incident_store: LazyIncidentStore

    @classmethod
    def build(cls, settings: Settings) -> Shared:
        loop_collector = LoopCollector(settings.store_url)
        open_incidents = OpenIncidentsCollector()
        loop_registry = CollectorRegistry(auto_describe=False)
        loop_registry.register(loop_collector)
        loop_registry.register(open_incidents)
        store = LazyIncidentStore(settings.store_url)
        return cls(settings, loop_collector, open_incidents, loop_registry, store)


def get_shared(request: Request) -> Shared:
    shared: Shared = request.app.state.shared
    return shared


def get_settings(request: Request) -> Settings:
    return get_shared(request).settings


def get_client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


def get_service(request: Request) -> IncidentService:
    svc: IncidentService = request.app.state.service
    return svc


def app_tracker(app: Any) -> Tracker:
    """The app's one tracker (the Jira webhook, the local tickets and the refusal comments share
    it), kept for the app's life (one HTTP pool, one schema check): the one `selfheal api` built
    and checked against Jira at start, or one built on first use (tests, embedded apps)."""
    tracker: Tracker | None = getattr(app.state, "tracker", None)
    if tracker is None:
        tracker = build_tracker(app.state.shared.settings)
        app.state.tracker = tracker
    return tracker


def get_tracker(request: Request) -> Tracker:
    return app_tracker(request.app)


def close_tracker(app: object) -> None:
    """Release the tracker's connections if a request ever built it."""
    state = getattr(app, "state", None)
    tracker: Tracker | None = getattr(state, "tracker", None)
    close = getattr(tracker, "close", None)
    if callable(close):
        close()
