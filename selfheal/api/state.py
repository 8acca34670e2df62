"""What every route shares, built once per app by `create_app` and read from the request.

Settings and the loop's metrics registry exist from construction; the Temporal client and the
incident service only once the lifespan has connected, as before the split into routers.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from prometheus_client import CollectorRegistry
from temporalio.client import Client

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

    @classmethod
    def build(cls, settings: Settings) -> Shared:
        loop_collector = LoopCollector(settings.store_url)
        open_incidents = OpenIncidentsCollector()
        loop_registry = CollectorRegistry(auto_describe=False)
        loop_registry.register(loop_collector)
        loop_registry.register(open_incidents)
        return cls(settings, loop_collector, open_incidents, loop_registry)


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
