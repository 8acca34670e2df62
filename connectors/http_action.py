"""Perform a playbook's HTTP step (a deploy hook, a feature-flag flip) and judge its answer.

Temporal owns retries, so one call is one request: connection failures, timeouts, 5xx and the
"try later" statuses become a retryable HttpActionError; any other status outside `expect_status`
is a configuration or permission problem that another attempt would only repeat.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel

from connectors.base import ConnectorError
from models.plan import HttpAction

#: Besides 5xx: timeouts, conflicts, locks, rate limits; the same set the Jira connector retries.
_RETRYABLE_STATUS = frozenset({408, 409, 423, 425, 429})
_BODY_EXCERPT = 2000


class HttpActionError(ConnectorError):
    """The request failed or was answered unexpectedly; `retryable` tells the activity what to do."""


class HttpResult(BaseModel):
    """The answer to one HTTP step: status, the start of the body, and whether it was expected."""

    status: int
    body: str
    ok: bool


def safe_url(url: str) -> str:
    """The URL for messages and logs: no credentials, no query string (tokens often live there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


def perform_http(action: HttpAction, *, transport: httpx.BaseTransport | None = None) -> HttpResult:
    """Send the request once; return the result when its status is expected, else raise."""
    where = f"{action.method} {safe_url(action.url)}"
    try:
        with httpx.Client(timeout=action.timeout_seconds, transport=transport) as client:
            # json=None sends no body at all, which is what a bodiless step means.
            response = client.request(
                action.method, action.url, headers=action.headers, json=action.json_body
            )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise HttpActionError(f"{where}: bad url: {exc}", retryable=False) from exc
    except httpx.TransportError as exc:  # refused, reset, DNS, TLS, timed out
        raise HttpActionError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise HttpActionError(f"{where}: {type(exc).__name__}: {exc}", retryable=False) from exc

    body = response.text[:_BODY_EXCERPT]
    status = response.status_code
    if status in action.expect_status:
        return HttpResult(status=status, body=body, ok=True)
    retryable = status >= 500 or status in _RETRYABLE_STATUS
    expected = ", ".join(str(s) for s in action.expect_status)
    excerpt = " ".join(body.split())[:300]
    raise HttpActionError(
        f"{where}: HTTP {status} (expected {expected})" + (f": {excerpt}" if excerpt else ""),
        retryable=retryable,
    )
