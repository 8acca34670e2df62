"""`create_app`: the state every route shares, built once; the error shape every route answers
with; request timing; then one router per resource, in their OpenAPI order, and the MCP endpoint.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from connectors.base import Tracker
from connectors.temporal import connect
from selfheal.api import alerts, health, incidents, jira_webhook, playbooks, remediation, tickets, ui
from selfheal.api.auth import require
from selfheal.api.body import validation_errors
from selfheal.api.counters import REQUEST_SECONDS
from selfheal.api.state import Shared, app_tracker, close_tracker
from selfheal.incidents import IncidentError, IncidentService
from selfheal.mcp_server.http import McpHttp
from selfheal.settings import Settings

#: In this order in the OpenAPI document.
ROUTERS = (
    alerts.router,
    incidents.router,
    remediation.router,
    playbooks.router,
    jira_webhook.router,
    tickets.router,
    health.router,
    # The web page (not in the OpenAPI document).
    ui.router,
)


def create_app(
    settings: Settings,
    *,
    client_factory: Callable[[], Awaitable[Client]] | None = None,
    tracker: Tracker | None = None,
) -> FastAPI:
    """The ASGI app; `client_factory` lets tests inject a client, production connects lazily.
    `tracker`: one already built (and checked against Jira by `selfheal api`); else built on first use."""

    async def default_factory() -> Client:
        return await connect(settings.temporal, lazy=True)

    factory = client_factory or default_factory
    shared = Shared.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = await factory()
        app.state.service = IncidentService(app.state.client, settings, tracker=lambda: app_tracker(app))
        try:
            async with mcp.run():
                yield
        finally:
            shared.loop_collector.close()
            shared.incident_store.close()
            close_tracker(app)

    app = FastAPI(
        title="selfheal",
        version="0.1.0",
        summary="Alertmanager webhook → durable Temporal incident → ticket → human decision",
        lifespan=lifespan,
    )
    app.state.shared = shared
    if tracker is not None:
        app.state.tracker = tracker
    app.middleware("http")(_timing)
    app.exception_handler(IncidentError)(_incident_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_request_invalid)
    for router in ROUTERS:
        app.include_router(router)
    # MCP over streamable HTTP (docs/mcp.md): people authenticate as for every other route, and
    # its tools call this app back with the caller's own credentials.
    mcp = McpHttp(app, require("viewer"))
    app.router.routes.append(Route("/mcp", endpoint=mcp, include_in_schema=False))
    return app


async def _timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    REQUEST_SECONDS.labels(path, request.method).observe(time.perf_counter() - start)
    return response


async def _incident_error(_: Request, exc: IncidentError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"error": exc.message})


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"error": exc.detail}, headers=exc.headers)


async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(list(exc.errors()))
    return JSONResponse(status_code=422, content={"error": "invalid request", "errors": errors})
