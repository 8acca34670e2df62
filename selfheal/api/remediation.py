"""Autonomous remediation's switch: its state (paused, recent runs), pause and resume; and the
forge webhooks that wake a remediation waiting for its pull request to be merged."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr
from temporalio.service import RPCError, RPCStatusCode

from connectors.gitops import webhooks
from models import ids
from models.control import ControlState, PauseRequest
from models.gitops import ForgeEvent, incident_of_branch
from selfheal import control
from selfheal.api.auth import Viewer, client_address, refuse_other_name, require
from selfheal.api.body import PayloadTooLarge, read_limited
from selfheal.api.state import get_client, get_service, get_settings
from selfheal.auth import Principal
from selfheal.incidents import IncidentNotFound

log = structlog.get_logger("selfheal.audit")

router = APIRouter()


class PauseBody(BaseModel):
    #: Optional: the caller is whoever authenticated; a different name here is refused (403).
    by: str | None = Field(default=None, min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)


@router.get("/api/v1/remediation", response_model=ControlState)
async def remediation_state(request: Request, _: Viewer) -> ControlState:
    """Whether autonomous remediation is paused, and recent playbook runs (circuit breaker)."""
    return await control.get_state(get_client(request), get_settings(request))


@router.post("/api/v1/remediation/pause", response_model=ControlState)
async def pause(
    request: Request,
    body: PauseBody,
    principal: Annotated[Principal, Depends(require("approver", action="pause"))],
) -> ControlState:
    """Stop autonomous fixes globally: every match is escalated to humans instead (approvers)."""
    return await _set(
        request, principal, PauseRequest(paused=True, by=principal.name, reason=body.reason), body
    )


@router.post("/api/v1/remediation/resume", response_model=ControlState)
async def resume(
    request: Request,
    body: PauseBody,
    principal: Annotated[Principal, Depends(require("approver", action="resume"))],
) -> ControlState:
    """Restart autonomous fixes (approvers)."""
    return await _set(
        request, principal, PauseRequest(paused=False, by=principal.name, reason=body.reason), body
    )


async def _set(request: Request, principal: Principal, req: PauseRequest, body: PauseBody) -> ControlState:
    action = "pause" if req.paused else "resume"
    refuse_other_name(request, principal, body.by, action)
    return await control.set_paused(
        get_client(request), get_settings(request), req, principal, origin=client_address(request)
    )


# --- forge webhooks: wake a remediation waiting for its pull request --------------------------------
#
# Signed by the forge, not by a person: GitHub's and Gitea's HMAC of the raw body, GitLab's secret
# token. An event only wakes the wait, which then asks the forge itself, so nothing in the body is
# trusted beyond "look again at this branch's request". JSON or form (`payload=`) deliveries.
# Answers: 403 when that forge's secret is not configured, 401 for a bad or missing signature,
# 413, 422 for a body that is not a JSON object, 200 `ignored` for events about anything else
# (pings, test pushes, unknown event types), 200 `woken` or `not_waiting`.


@router.post("/api/v1/gitops/github/webhook")
async def github_webhook(request: Request) -> JSONResponse:
    """GitHub `pull_request` events (`X-Hub-Signature-256`)."""
    secret = get_settings(request).gitops.github_webhook_secret
    return await _forge_hook(
        request,
        "github",
        secret,
        lambda s, raw: webhooks.github_signature_ok(s, raw, request.headers.get("x-hub-signature-256")),
        lambda body: webhooks.github_event(request.headers.get("x-github-event"), body),
        request.headers.get("x-github-delivery"),
    )


@router.post("/api/v1/gitops/gitlab/webhook")
async def gitlab_webhook(request: Request) -> JSONResponse:
    """GitLab merge request events (`X-Gitlab-Token`)."""
    secret = get_settings(request).gitops.gitlab_webhook_token
    return await _forge_hook(
        request,
        "gitlab",
        secret,
        lambda s, _: webhooks.gitlab_token_ok(s, request.headers.get("x-gitlab-token")),
        lambda body: webhooks.gitlab_event(request.headers.get("x-gitlab-event"), body),
        request.headers.get("x-gitlab-event-uuid"),
    )


@router.post("/api/v1/gitops/gitea/webhook")
async def gitea_webhook(request: Request) -> JSONResponse:
    """Gitea / Forgejo `pull_request` events (`X-Gitea-Signature` or `X-Forgejo-Signature`)."""
    secret = get_settings(request).gitops.gitea_webhook_secret
    signature = request.headers.get("x-gitea-signature") or request.headers.get("x-forgejo-signature")
    event = request.headers.get("x-gitea-event") or request.headers.get("x-forgejo-event")
    return await _forge_hook(
        request,
        "gitea",
        secret,
        lambda s, raw: webhooks.gitea_signature_ok(
            s, webhooks.json_body(request.headers.get("content-type"), raw), signature
        ),
        lambda body: webhooks.github_event(event, body),
        request.headers.get("x-gitea-delivery"),
    )


async def _forge_hook(
    request: Request,
    forge: Literal["github", "gitlab", "gitea"],
    secret: SecretStr | None,
    signed: Callable[[str, bytes], bool],
    parse: Callable[[dict[str, Any]], webhooks.PullEvent | None],
    delivery: str | None,
) -> JSONResponse:
    settings = get_settings(request)
    if secret is None:
        return JSONResponse(
            status_code=403, content={"error": f"{forge} webhook disabled: set gitops.{forge}_webhook_*"}
        )
    try:
        raw = await read_limited(request, settings.max_body_bytes)
    except PayloadTooLarge:
        return JSONResponse(status_code=413, content={"error": "body too large"})
    if not signed(secret.get_secret_value(), raw):
        log.warning("forge webhook refused: bad signature", forge=forge, remote=client_address(request))
        return JSONResponse(status_code=401, content={"error": f"bad or missing {forge} webhook signature"})
    try:
        body = json.loads(webhooks.json_body(request.headers.get("content-type"), raw))
    except ValueError:
        return JSONResponse(status_code=422, content={"error": "body is not JSON", "errors": [{"path": "$"}]})
    if not isinstance(body, dict):
        return JSONResponse(
            status_code=422, content={"error": "body must be an object", "errors": [{"path": "$"}]}
        )
    event = parse(body)
    found = incident_of_branch(event.branch) if event is not None else None
    if event is None or found is None:
        return JSONResponse(status_code=200, content={"status": "ignored"})
    incident_id, _ = found
    forge_event = ForgeEvent(
        incident_id=incident_id,
        branch=event.branch,
        number=event.number,
        action=event.action,
        forge=forge,
        delivery=(delivery or "")[:200],
    )
    status = await _wake(request, forge_event)
    log.info("forge webhook", forge=forge, incident_id=incident_id, action=event.action, status=status)
    return JSONResponse(status_code=200, content={"status": status, "incident_id": incident_id})


async def _wake(request: Request, event: ForgeEvent) -> str:
    """Signal the incident's running remediation (`remediation-<target>`, target from the incident);
    `not_waiting` when there is none (polling would have found the change anyway)."""
    try:
        view = await get_service(request).get(event.incident_id)
    except IncidentNotFound:
        return "not_waiting"
    if view.proposal is None:
        return "not_waiting"
    handle = get_client(request).get_workflow_handle(ids.remediation_workflow_id(view.proposal.target))
    try:
        await handle.signal("forge_event", event)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return "not_waiting"
        raise HTTPException(status_code=503, detail=f"Temporal did not take the signal: {err}") from err
    return "woken"
