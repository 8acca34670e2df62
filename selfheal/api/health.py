"""Liveness, readiness (Temporal answers) and Prometheus metrics; none of them needs a token."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from selfheal.api.state import get_client, get_shared

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    client = get_client(request)
    try:
        await client.workflow_service.get_system_info(_system_info_request(), timeout=timedelta(seconds=2))
    except Exception as err:
        return JSONResponse(
            status_code=503, content={"status": "unavailable", "error": f"Temporal: {err}"[:300]}
        )
    return JSONResponse(status_code=200, content={"status": "ready"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Process metrics, plus the loop's own (incident store aggregates, open incidents by stage)."""
    shared = get_shared(request)
    # Bounded well inside Prometheus' scrape timeout: with Temporal down the gauge is left out.
    deadline = min(shared.settings.temporal.rpc_timeout_seconds, 3.0)
    await shared.open_incidents.refresh(get_client(request), deadline)

    def render() -> bytes:
        return generate_latest(REGISTRY) + generate_latest(shared.loop_registry)

    return Response(await asyncio.to_thread(render), media_type=CONTENT_TYPE_LATEST)


def _system_info_request() -> Any:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    return GetSystemInfoRequest()
