"""`/ui`: the embedded tracker's web page — the incident list, one incident's ticket page, and
approve/reject for a signed-in approver.

Server-rendered (Jinja2, autoescaped), no script at all: the CSP forbids every script, frames and
foreign form targets. The incident's page is `pages.ticket.build_page`, the same document the
ticket gets, rendered to HTML by `pages.render.render_html`; its graphs are the local tracker's
attachments, served here to signed-in users. People sign in with their API token (`auth.users`);
the session cookie and the CSRF token on every form are `selfheal.api.ui_session`. A decision goes
through the same `IncidentService.decide` as the API, credited to the signed-in user.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from models import ids
from models.incident import Decision, DecisionKind, IncidentView, Stage
from pages.document import ATTACHMENT_NAME
from pages.render import render_html
from pages.ticket import build_page
from selfheal.api.auth import client_address
from selfheal.api.body import PayloadTooLarge, read_limited
from selfheal.api.counters import DECISIONS
from selfheal.api.state import get_service, get_settings, get_tracker
from selfheal.api.ui_session import Session, SessionCodec
from selfheal.auth import Principal, user_for_token
from selfheal.incidents import IncidentError, IncidentService
from workflows.incident_rules import workflow_url

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/ui", include_in_schema=False)

_HERE = Path(__file__).parent
_TEMPLATES = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)
_CSS = (_HERE / "static" / "ui.css").read_bytes()

#: On every /ui answer: no script runs, nothing frames the page, forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Attachments may be SVG: even opened directly they run nothing (sandboxed, no script source).
_ATTACHMENT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=300",
}
_IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "svg": "image/svg+xml",
}
#: A form is small: a token, a CSRF token, a decision and a comment of at most 10,000 characters.
_FORM_LIMIT = 64 * 1024
_FORM_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{8,64}$")
_COMMENT_LIMIT = 10_000
_STATUSES = ("firing", "resolved")


def _codec(request: Request) -> SessionCodec:
    """One codec per app, made on first use (it may create the key file under the data dir)."""
    codec: SessionCodec | None = getattr(request.app.state, "ui_sessions", None)
    if codec is None:
        codec = SessionCodec(get_settings(request))
        request.app.state.ui_sessions = codec
    return codec


def _page(
    request: Request, session: Session, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    body = _TEMPLATES.get_template(template).render(user=session.user, csrf=session.csrf, **context)
    response = HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
    if session.new:
        _codec(request).write(response, session)
    return response


def _redirect(request: Request, to: str, session: Session | None = None) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)
    if session is not None and session.new:
        _codec(request).write(response, session)
    return response


def _problem(request: Request, session: Session, status_code: int, message: str) -> HTMLResponse:
    return _page(request, session, "error.html", status_code, title="Not done", message=message)


async def _form(request: Request) -> dict[str, str] | str:
    """The urlencoded form's fields (first value of each), or what is wrong with the request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return "expected a form (application/x-www-form-urlencoded)"
    try:
        raw = await read_limited(request, _FORM_LIMIT)
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except PayloadTooLarge:
        return "form too large"
    except (UnicodeDecodeError, ValueError):
        return "form is not valid UTF-8 urlencoded data"
    return {key: values[0] for key, values in fields.items()}


def _age(opened: datetime | None, now: datetime) -> str:
    """How long ago, as a reader scans a list: `3d 2h`, `2h 5m`, `12m`, `40s`."""
    if opened is None:
        return "-"
    seconds = max(0, int((now - opened).total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


async def decide_as(
    service: IncidentService,
    incident_id: str,
    user: Principal,
    kind: DecisionKind,
    comment: str,
    update_id: str | None,
    origin: str,
    plan_digest: str | None = None,
) -> IncidentView:
    """The one place the page decides: credited to the signed-in user, never to a typed name; the
    service checks the role and writes the audit line. `plan_digest` is the plan the page showed."""
    decision = Decision(decision=kind, by=user.name, comment=comment, source="ui", plan_digest=plan_digest)
    return await service.decide(incident_id, decision, user, update_id=update_id, origin=origin)


def _refused(incident_id: str, user: Principal, client: str, reason: str) -> None:
    """Log a decision the service did not take (it audited it)."""
    log.warning(
        "decision refused",
        incident_id=incident_id,
        user=user.name,
        via=user.via,
        client=client,
        reason=reason,
    )


# ------------------------------------------------------------------------------------ sign-in


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    return _redirect(request, "/ui/incidents")


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    session = _codec(request).read(request)
    if session.user is not None:
        return _redirect(request, "/ui/incidents")
    return _page(request, session, "signin.html", title="Sign in", message="")


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Exchange an API token for a session; the token itself is never stored in the browser."""
    codec = _codec(request)
    session = codec.read(request)
    form = await _form(request)
    if isinstance(form, str):
        return _page(request, session, "signin.html", 400, title="Sign in", message=form)
    if session.new or not session.csrf_ok(form.get("csrf")):
        # No valid session yet (or a forged form): show the form again with a fresh token.
        return _page(
            request, session, "signin.html", 403, title="Sign in", message="form expired: sign in again"
        )
    token = form.get("token", "").strip()
    user = user_for_token(get_settings(request).auth, token) if token else None
    client = client_address(request) or "-"
    if user is None:
        log.warning("ui sign-in refused", via="token", client=client)
        message = "unknown token" if token else "token: enter your API token"
        return _page(request, session, "signin.html", 401, title="Sign in", message=message)
    log.info("ui sign-in", user=user.name, via=user.via, client=client)
    return _redirect(request, "/ui/incidents", codec.signed_in(user))


@router.post("/signout")
async def signout(request: Request) -> Response:
    codec = _codec(request)
    session = codec.read(request)
    form = await _form(request)
    if isinstance(form, str) or not session.csrf_ok(form.get("csrf")):
        return _problem(request, session, 403, "form expired: reload the page and try again")
    if session.user is not None:
        log.info("ui sign-out", user=session.user.name)
    return _redirect(request, "/ui/signin", codec.signed_out())


# ------------------------------------------------------------------------------------ pages


def _viewer(request: Request) -> tuple[Session, Response | None]:
    """The session, and the answer to give instead when nobody (or nobody with a role) is signed in."""
    session = _codec(request).read(request)
    if session.user is None:
        return session, _redirect(request, "/ui/signin", session)
    if not session.user.can("viewer"):
        return session, _problem(request, session, 403, f"{session.user.name} may not read incidents")
    return session, None


@router.get("/incidents")
async def incident_list(request: Request) -> Response:
    session, refused = _viewer(request)
    if refused is not None:
        return refused
    q = request.query_params
    filters = {
        "status": q.get("status") or None,
        "stage": q.get("stage") or None,
        "service": (q.get("service") or "").strip() or None,
    }
    if filters["status"] is not None and filters["status"] not in _STATUSES:
        return _problem(request, session, 400, "status: firing or resolved")
    if filters["stage"] is not None and filters["stage"] not in {s.value for s in Stage}:
        return _problem(request, session, 400, "stage: not a stage")
    try:
        items = await get_service(request).list(**filters, limit=200)
    except IncidentError as err:
        return _problem(request, session, err.status_code, err.message)
    now = datetime.now(UTC)
    rows = [{"incident": s, "age": _age(s.opened_at, now)} for s in items]
    return _page(
        request,
        session,
        "incidents.html",
        title="Incidents",
        rows=rows,
        filters=filters,
        statuses=_STATUSES,
        stages=[s.value for s in Stage],
        quote=quote,
    )


async def _incident_page(
    request: Request, session: Session, incident_id: str, status_code: int = 200, message: str = ""
) -> Response:
    settings = get_settings(request)
    try:
        view = await get_service(request).get(incident_id)
    except IncidentError as err:
        return _problem(request, session, err.status_code, err.message)
    ticket = view.ticket
    local_key = ticket.key if ticket is not None and ticket.tracker == "local" else None

    def attachment_url(name: str) -> str | None:
        if local_key is None:
            return None
        return f"/ui/tickets/{quote(local_key, safe='')}/attachments/{quote(name, safe='')}"

    wf_url = workflow_url(
        settings.temporal.ui_url, settings.temporal.namespace, ids.workflow_id_for_group(view.group_id)
    )
    # render_html escapes every string of the document itself; the template must not escape it again.
    page = Markup(render_html(build_page(view, wf_url), attachment_url))  # noqa: S704
    awaiting = view.stage == Stage.AWAITING_DECISION and view.decision is None
    can_decide = awaiting and session.user is not None and session.user.can("approver")
    return _page(
        request,
        session,
        "incident.html",
        status_code,
        title=f"{view.alertname or 'Incident'} {view.id}",
        view=view,
        page=page,
        awaiting=awaiting,
        can_decide=can_decide,
        form_id=secrets.token_urlsafe(18),
        message=message,
        quote=quote,
    )


@router.get("/incidents/{incident_id}")
async def incident(request: Request, incident_id: str) -> Response:
    session, refused = _viewer(request)
    if refused is not None:
        return refused
    return await _incident_page(request, session, incident_id)


@router.post("/incidents/{incident_id}/decision")
async def decide(request: Request, incident_id: str) -> Response:
    """Approve or reject as the signed-in approver; back to the incident, which shows the result."""
    session, refused = _viewer(request)
    if refused is not None:
        return refused
    assert session.user is not None
    user = session.user
    form = await _form(request)
    if isinstance(form, str):
        return _problem(request, session, 400, form)
    if not session.csrf_ok(form.get("csrf")):
        return _problem(request, session, 403, "form expired: reload the page and try again")
    try:
        kind = DecisionKind(form.get("decision", ""))
    except ValueError:
        return _problem(request, session, 400, "decision: approve or reject")
    comment = form.get("comment", "").strip()
    if len(comment) > _COMMENT_LIMIT:
        return _problem(request, session, 400, f"comment: at most {_COMMENT_LIMIT} characters")
    client = client_address(request) or "-"
    if not user.can("approver"):
        DECISIONS.labels(kind.value, "ui", "403").inc()
        await get_service(request).record_refusal(
            incident_id,
            kind,
            by=user.name,
            via="ui",
            reason=f"{user.name} is not an approver",
            dedup=f"ui-{user.name}-{form.get('form_id') or uuid.uuid4().hex}"[:200],
            principal=user,
            origin=client,
            source="ui",
        )
        return _problem(request, session, 403, f"{user.name} is not an approver")
    form_id = form.get("form_id", "")
    update_id = f"ui-{user.name}-{form_id}" if _FORM_ID.match(form_id) else None
    digest = form.get("plan_digest", "")
    if digest and not _DIGEST.fullmatch(digest):
        return _problem(request, session, 400, "plan_digest: 8-64 lowercase hex digits")
    try:
        await decide_as(
            get_service(request), incident_id, user, kind, comment, update_id, client, digest or None
        )
    except IncidentError as err:
        DECISIONS.labels(kind.value, "ui", str(err.status_code)).inc()
        _refused(incident_id, user, client, err.message)
        return await _incident_page(request, session, incident_id, err.status_code, err.message)
    DECISIONS.labels(kind.value, "ui", "accepted").inc()
    log.info("decision via ui", incident_id=incident_id, decision=kind.value, user=user.name, client=client)
    return _redirect(request, f"/ui/incidents/{quote(incident_id, safe='')}")


# ------------------------------------------------------------------------------- attachments, CSS


@router.get("/tickets/{key}/attachments/{name}")
async def attachment(request: Request, key: str, name: str) -> Response:
    """A local ticket's attachment (the graphs on the page), to signed-in readers only."""
    session, refused = _viewer(request)
    if refused is not None:
        return refused
    settings = get_settings(request)
    if settings.tracker.kind != "local":
        return _problem(request, session, 404, "attachments live in Jira in this deployment")
    if not ATTACHMENT_NAME.fullmatch(name):
        return _problem(request, session, 404, "no such attachment")
    from connectors.base import TrackerError
    from connectors.local_tracker import LocalTracker

    try:
        tracker = get_tracker(request)
        if not isinstance(tracker, LocalTracker):
            return _problem(request, session, 404, "attachments live in Jira in this deployment")
        data = await run_in_threadpool(tracker.attachment, key, name)
    except TrackerError:
        return _problem(request, session, 404, "no such attachment")
    kind = _IMAGE_TYPES[name.rsplit(".", 1)[1].lower()]
    return Response(data, media_type=kind, headers=_ATTACHMENT_HEADERS)


@router.get("/static/ui.css")
async def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
