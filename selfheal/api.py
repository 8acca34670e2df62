"""The HTTP API: Alertmanager webhook, incidents, decisions, the Jira webhook, health and metrics.

A webhook is answered 2xx only after signal-with-start returned, i.e. once Temporal holds the
notification; when Temporal is unreachable we answer 503 so Alertmanager retries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client

from connectors.temporal import connect
from models import ids
from models.control import ControlState, PauseRequest
from models.incident import AlertmanagerWebhook, Decision, DecisionKind, IncidentSummary, IncidentView
from selfheal import control
from selfheal.incidents import IncidentError, IncidentService
from selfheal.loop_metrics import LoopCollector, OpenIncidentsCollector
from selfheal.settings import Settings

log = structlog.get_logger(__name__)

NOTIFICATIONS = Counter(
    "selfheal_webhook_notifications_total", "Alertmanager notifications by result", ["result"]
)
DECISIONS = Counter(
    "selfheal_decisions_total", "Decisions by kind, source and result", ["decision", "source", "result"]
)
REQUEST_SECONDS = Histogram("selfheal_http_request_seconds", "HTTP request latency", ["route", "method"])


class IngestResponse(BaseModel):
    incident_id: str | None
    status: str


class IncidentList(BaseModel):
    incidents: list[IncidentSummary]


class DecisionRequest(BaseModel):
    decision: DecisionKind
    by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=10_000)


class PauseBody(BaseModel):
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)


class ErrorBody(BaseModel):
    error: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        if part == "body":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [{"path": _json_path(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors]


class PayloadTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes whether or not Content-Length is honest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _token_ok(settings: Settings, header: str | None) -> bool:
    """Bearer token or basic auth, each compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    value = value.strip()
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if scheme.lower() == "bearer" and token:
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok = False
        if settings.webhook_basic_user and settings.webhook_basic_password:
            ok = hmac.compare_digest(
                user.encode(), settings.webhook_basic_user.encode()
            ) & hmac.compare_digest(
                password.encode(), settings.webhook_basic_password.get_secret_value().encode()
            )
        if token and hmac.compare_digest(password.encode(), token.encode()):
            ok = True
        return ok
    return False


def create_app(
    settings: Settings,
    *,
    client_factory: Callable[[], Awaitable[Client]] | None = None,
) -> FastAPI:
    """The ASGI app; `client_factory` lets tests inject a client, production connects lazily."""

    async def default_factory() -> Client:
        return await connect(settings.temporal, lazy=True)

    factory = client_factory or default_factory
    # The loop's metrics come from durable data at scrape time, in a registry of this app's own.
    loop_collector = LoopCollector(settings.store_url)
    open_incidents = OpenIncidentsCollector()
    loop_registry = CollectorRegistry(auto_describe=False)
    loop_registry.register(loop_collector)
    loop_registry.register(open_incidents)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.client = await factory()
        app.state.service = IncidentService(app.state.client, settings)
        try:
            yield
        finally:
            loop_collector.close()

    app = FastAPI(
        title="selfheal",
        version="0.1.0",
        summary="Alertmanager webhook → durable Temporal incident → ticket → human decision",
        lifespan=lifespan,
    )

    def service(request: Request) -> IncidentService:
        svc: IncidentService = request.app.state.service
        return svc

    def require_token(request: Request) -> None:
        if not _token_ok(settings, request.headers.get("authorization")):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid credentials (Authorization: Bearer <webhook token>)",
                headers={"WWW-Authenticate": 'Bearer realm="selfheal"'},
            )

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        REQUEST_SECONDS.labels(path, request.method).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(IncidentError)
    async def incident_error(_: Request, exc: IncidentError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": exc.message})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": exc.detail}, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(list(exc.errors()))
        return JSONResponse(status_code=422, content={"error": "invalid request", "errors": errors})

    @app.post(
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
    async def post_alerts(request: Request, _: None = Depends(require_token)) -> JSONResponse:
        """Alertmanager webhook (version 4): durably recorded before the 2xx."""
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
                    "errors": _validation_errors(exc.errors()),
                },
            )
        result = await service(request).ingest(body)
        NOTIFICATIONS.labels(result.status).inc()
        return JSONResponse(
            status_code=202 if result.status == "accepted" else 200,
            content={"incident_id": result.incident_id, "status": result.status},
        )

    @app.get("/api/v1/incidents", response_model=IncidentList)
    async def list_incidents(
        request: Request,
        status: str | None = Query(default=None, description="firing | resolved"),
        stage: str | None = Query(default=None),
        service_name: str | None = Query(default=None, alias="service"),
        limit: int = Query(default=100, ge=1, le=1000),
        _: None = Depends(require_token),
    ) -> IncidentList:
        """Incidents newest first, read from Temporal visibility."""
        items = await service(request).list(status=status, stage=stage, service=service_name, limit=limit)
        return IncidentList(incidents=items)

    @app.get("/api/v1/incidents/{incident_id}", response_model=IncidentView)
    async def get_incident(
        request: Request, incident_id: str, _: None = Depends(require_token)
    ) -> IncidentView:
        return await service(request).get(incident_id)

    @app.post("/api/v1/incidents/{incident_id}/decision", response_model=IncidentView)
    async def post_decision(
        request: Request, incident_id: str, body: DecisionRequest, _: None = Depends(require_token)
    ) -> IncidentView:
        """Approve or reject; answered once the workflow accepted the decision (Temporal update)."""
        decision = Decision(decision=body.decision, by=body.by, comment=body.comment, source="api")
        idem = request.headers.get("idempotency-key")
        try:
            view = await service(request).decide(
                incident_id, decision, update_id=f"api-{idem}" if idem else None
            )
        except IncidentError as err:
            DECISIONS.labels(body.decision.value, "api", str(err.status_code)).inc()
            raise
        DECISIONS.labels(body.decision.value, "api", "accepted").inc()
        return view

    @app.get("/api/v1/remediation", response_model=ControlState)
    async def remediation_state(request: Request, _: None = Depends(require_token)) -> ControlState:
        """Whether autonomous remediation is paused, and recent playbook runs (circuit breaker)."""
        return await control.get_state(request.app.state.client, settings)

    @app.post("/api/v1/remediation/pause", response_model=ControlState)
    async def pause(request: Request, body: PauseBody, _: None = Depends(require_token)) -> ControlState:
        """Stop autonomous fixes globally: every match is escalated to humans instead."""
        req = PauseRequest(paused=True, by=body.by, reason=body.reason)
        return await control.set_paused(request.app.state.client, settings, req)

    @app.post("/api/v1/remediation/resume", response_model=ControlState)
    async def resume(request: Request, body: PauseBody, _: None = Depends(require_token)) -> ControlState:
        """Restart autonomous fixes (approvers only)."""
        req = PauseRequest(paused=False, by=body.by, reason=body.reason)
        return await control.set_paused(request.app.state.client, settings, req)

    @app.post("/api/v1/jira/webhook")
    async def jira_webhook(request: Request, token: str | None = None) -> JSONResponse:
        """Jira comment `/selfheal approve|reject` or a transition to the approved/rejected status."""
        secret = settings.tracker.webhook_secret
        if secret is None:
            return JSONResponse(
                status_code=403, content={"error": "Jira webhook disabled: tracker.webhook_secret is not set"}
            )
        try:
            raw = await read_limited(request, settings.max_body_bytes)
        except PayloadTooLarge:
            return JSONResponse(status_code=413, content={"error": "body too large"})
        if not _jira_signature_ok(
            secret.get_secret_value(), raw, request.headers.get("x-hub-signature"), token
        ):
            return JSONResponse(status_code=401, content={"error": "bad or missing Jira webhook signature"})
        try:
            event = json.loads(raw)
        except ValueError:
            return JSONResponse(
                status_code=422, content={"error": "body is not JSON", "errors": [{"path": "$"}]}
            )
        if not isinstance(event, dict):
            return JSONResponse(
                status_code=422, content={"error": "body must be an object", "errors": [{"path": "$"}]}
            )
        parsed = parse_jira_event(event, settings)
        if parsed is None:
            return JSONResponse(status_code=200, content={"status": "ignored"})
        incident_id, decision = parsed
        delivery = (
            request.headers.get("x-atlassian-webhook-identifier") or hashlib.sha256(raw).hexdigest()[:32]
        )
        svc = service(request)
        try:
            view = await svc.decide(incident_id, decision, update_id=f"jira-{delivery}")
        except IncidentError as err:
            DECISIONS.labels(decision.decision.value, "jira", str(err.status_code)).inc()
            if err.status_code == 409:
                return JSONResponse(status_code=200, content={"status": "not_awaiting", "error": err.message})
            raise
        DECISIONS.labels(decision.decision.value, "jira", "accepted").inc()
        return JSONResponse(
            status_code=200,
            content={"status": "decided", "incident_id": view.id, "decision": decision.decision.value},
        )

    @app.get("/api/v1/tickets/{key}")
    async def get_local_ticket(key: str, _: None = Depends(require_token)) -> dict[str, Any]:
        """The local tracker's ticket (embedded default), with its comments."""
        if settings.tracker.kind != "local":
            raise HTTPException(status_code=404, detail="tickets live in Jira in this deployment")
        from connectors.base import TrackerError
        from connectors.local_tracker import LocalTracker

        try:
            return LocalTracker(settings.local_db_path).get(key)
        except TrackerError as err:
            raise HTTPException(status_code=404, detail=str(err)) from err

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        client: Client = request.app.state.client
        try:
            await client.workflow_service.get_system_info(
                _system_info_request(), timeout=timedelta(seconds=2)
            )
        except Exception as err:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "error": f"Temporal: {err}"[:300]}
            )
        return JSONResponse(status_code=200, content={"status": "ready"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Process metrics, plus the loop's own (incident store aggregates, open incidents by stage)."""
        # Bounded well inside Prometheus' scrape timeout: with Temporal down the gauge is left out.
        deadline = min(settings.temporal.rpc_timeout_seconds, 3.0)
        await open_incidents.refresh(request.app.state.client, deadline)

        def render() -> bytes:
            return generate_latest(REGISTRY) + generate_latest(loop_registry)

        return Response(await asyncio.to_thread(render), media_type=CONTENT_TYPE_LATEST)

    return app


def _system_info_request() -> Any:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    return GetSystemInfoRequest()


def _jira_signature_ok(secret: str, raw: bytes, header: str | None, token: str | None) -> bool:
    if header:
        algo, _, digest = header.partition("=")
        if algo.lower() != "sha256":
            return False
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest.strip().lower(), expected)
    if token:
        return hmac.compare_digest(token.encode(), secret.encode())
    return False


def _jira_user_ids(user: Any) -> list[str]:
    if not isinstance(user, dict):
        return []
    return [str(user[k]) for k in ("name", "accountId", "emailAddress", "key") if user.get(k)]


def parse_jira_event(event: dict[str, Any], settings: Settings) -> tuple[str, Decision] | None:
    """Turn a Jira webhook event into (incident id, decision), or None when it is not one.

    Comments count only when their first line starts with `/selfheal approve|reject`; the author's
    identity is checked against the approvers later, by the service, like any other decision.
    """
    fields = _obj(_obj(event.get("issue")).get("fields"))
    labels = _arr(fields.get("labels"))
    incident_id = next(
        (
            lab.removeprefix("selfheal-")
            for lab in labels
            if isinstance(lab, str) and ids.parse_incident_id(lab.removeprefix("selfheal-"))
        ),
        None,
    )
    if incident_id is None:
        return None
    bots = set(settings.tracker.bot_accounts)
    comment = event.get("comment")
    if isinstance(comment, dict) and isinstance(comment.get("body"), str):
        user_ids = _jira_user_ids(comment.get("author")) or _jira_user_ids(event.get("user"))
        if not user_ids or bots.intersection(user_ids):
            return None
        first, _, rest = comment["body"].strip().partition("\n")
        words = first.split(maxsplit=2)
        if len(words) >= 2 and words[0] == "/selfheal" and words[1] in ("approve", "reject"):
            reason = " ".join(filter(None, [words[2] if len(words) > 2 else "", rest.strip()]))
            return incident_id, Decision(
                decision=DecisionKind(words[1]),
                by=_pick_user(user_ids, settings),
                comment=reason[:10_000],
                source="jira",
            )
        return None
    items = _arr(_obj(event.get("changelog")).get("items"))
    jira_cfg = settings.tracker.jira
    approved = (jira_cfg.approved_status if jira_cfg else "Approved").lower()
    rejected = (jira_cfg.rejected_status if jira_cfg else "Rejected").lower()
    for item in items:
        if not isinstance(item, dict) or item.get("field") != "status":
            continue
        to = str(item.get("toString") or "").lower()
        kind = DecisionKind.APPROVE if to == approved else DecisionKind.REJECT if to == rejected else None
        if kind is None:
            continue
        user_ids = _jira_user_ids(event.get("user"))
        if not user_ids or bots.intersection(user_ids):
            return None
        return incident_id, Decision(
            decision=kind,
            by=_pick_user(user_ids, settings),
            comment=f"Jira transition to {item.get('toString')}",
            source="jira",
        )
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arr(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pick_user(user_ids: list[str], settings: Settings) -> str:
    """The identity that matches an approver, else the first one (which will then be refused)."""
    return next((i for i in user_ids if i in settings.approvers), user_ids[0])
