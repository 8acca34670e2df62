"""Ask Alertmanager whether an alert is still firing, through its API v2 (`GET /api/v2/alerts`).

Verification may require the original alert to be resolved, and remediation may require it to
still fire before acting. Alertmanager itself drops resolved alerts (endsAt in the past) from the
answer; we also exclude silenced and inhibited ones, because a muted alert is nobody's emergency.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from connectors.base import ConnectorError

_RETRYABLE_STATUS = frozenset({408, 429})


class AlertmanagerError(ConnectorError):
    """A call to Alertmanager failed; `retryable` says whether another attempt can help."""


def matcher(name: str, value: str) -> str:
    """An equality matcher in Alertmanager's filter syntax, with the value quoted and escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


class AlertmanagerClient:
    """One Alertmanager (or one HA peer: every peer has the full alert state)."""

    def __init__(self, url: str, timeout: float = 10.0, *, headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout, headers=dict(headers or {}))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def alerts(
        self,
        filter: Mapping[str, str] | list[str] | None = None,
        *,
        active: bool = True,
        silenced: bool = False,
        inhibited: bool = False,
    ) -> list[dict[str, Any]]:
        """Raw gettable alerts; `filter` is a label map (equality) or Alertmanager matcher strings."""
        matchers = [matcher(k, v) for k, v in filter.items()] if isinstance(filter, Mapping) else filter or []
        params = httpx.QueryParams(
            [
                ("active", _bool(active)),
                ("silenced", _bool(silenced)),
                ("inhibited", _bool(inhibited)),
                *(("filter", m) for m in matchers),
            ]
        )
        try:
            response = self._client.get("/api/v2/alerts", params=params)
        except httpx.TransportError as exc:
            raise AlertmanagerError(
                f"alertmanager {self.url}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        if response.status_code != 200:
            status = response.status_code
            raise AlertmanagerError(
                f"alertmanager GET /api/v2/alerts: HTTP {status}: {response.text.strip()[:300]}",
                retryable=status >= 500 or status in _RETRYABLE_STATUS,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise AlertmanagerError(
                "alertmanager answered with something that is not JSON", retryable=False
            ) from exc
        if not isinstance(data, list):
            raise AlertmanagerError(
                f"alertmanager: expected a list of alerts, got {type(data).__name__}", retryable=False
            )
        return [a for a in data if isinstance(a, dict)]

    def uptime_seconds(self) -> float | None:
        """How long this Alertmanager has run (`GET /api/v2/status`, its `uptime` start time), or
        None when it does not say."""
        try:
            response = self._client.get("/api/v2/status")
        except httpx.TransportError as exc:
            raise AlertmanagerError(
                f"alertmanager {self.url}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        if response.status_code != 200:
            return None
        try:
            started = datetime.fromisoformat(str(response.json()["uptime"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            return None
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        return (datetime.now(UTC) - started).total_seconds()

    def firing_state(
        self, fingerprint: str | None, labels: Mapping[str, str], *, warmup_seconds: float = 0.0
    ) -> Literal["firing", "resolved", "unknown"]:
        """`firing`, `resolved`, or `unknown` when the alert is absent from an Alertmanager that
        started less than `warmup_seconds` ago: a restarted Alertmanager knows no alert until
        Prometheus sends them again (every `resend_delay`, 1m by default), so absence there is
        not evidence of resolution."""
        if self.is_firing(fingerprint, labels):
            return "firing"
        if warmup_seconds > 0:
            uptime = self.uptime_seconds()
            if uptime is not None and uptime < warmup_seconds:
                return "unknown"
        return "resolved"

    def is_firing(self, fingerprint: str | None, labels: Mapping[str, str]) -> bool:
        """Whether the alert is active, unsilenced and uninhibited.

        With a fingerprint (as in the webhook payload) that identifies the alert, and `labels`
        only narrow the request; without one, the alert must have exactly `labels`, so a
        different alert that merely shares them does not count.
        """
        if fingerprint is None and not labels:
            raise AlertmanagerError("is_firing needs a fingerprint or labels", retryable=False)
        for alert in self.alerts(dict(labels)):
            if fingerprint is not None:
                if alert.get("fingerprint") == fingerprint:
                    return True
            elif alert.get("labels") == dict(labels):
                return True
        return False


def _bool(value: bool) -> str:
    return "true" if value else "false"
