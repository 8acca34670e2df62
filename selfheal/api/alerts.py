"""The Alertmanager webhook: one notification becomes a durable Temporal signal before the 2xx.

When Temporal is unreachable the incident service raises a 503, so Alertmanager retries.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from models.incident import AlertmanagerWebhook
from selfheal.api.auth import require_webhook
from selfheal.api.body import ErrorBody, PayloadTooLarge, read_limited, validation_errors
from selfheal.api.counters import NOTIFICATIONS
from selfheal.api.state import get_service, get_settings

router = APIRouter()


class IngestResponse(BaseModel):
    incident_id: str | None
    status: str


@router.post(
    "/api/v1/alerts",
    response_model=IngestResponse,
    responses={
        401: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": AlertmanagerWebhook.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    )
                }
            }
        }
    },
)
async def post_alerts(request: Request, _: None = Depends(require_webhook)) -> JSONResponse:
    """Alertmanager webhook (version 4): durably recorded before the 2xx."""
    settings = get_settings(request)
    try:
        raw = await read_limited(request, settings.max_body_bytes)
    except PayloadTooLarge:
        NOTIFICATIONS.labels("too_large").inc()
        return JSONResponse(
            status_code=413, content={"error": f"body larger than {settings.max_body_bytes} bytes"}
        )
    try:
        body = AlertmanagerWebhook.model_validate_json(raw)
    except ValidationError as exc:
        NOTIFICATIONS.labels("invalid").inc()
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid Alertmanager notification",
                "errors": validation_errors(exc.errors()),
            },
        )
    result = await get_service(request).ingest(body)
    NOTIFICATIONS.labels(result.status).inc()
    return JSONResponse(
        status_code=202 if result.status == "accepted" else 200,
        content={"incident_id": result.incident_id, "status": result.status},
    )
