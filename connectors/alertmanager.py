"""Ask Alertmanager whether an alert is still firing, through its API v2 (`GET /api/v2/alerts`).

Verification may require the original alert to be resolved, and remediation may require it to
still fire before acting. Alertmanager itself drops resolved alerts (endsAt in the past) from the
answer; we also exclude silenced and inhibited ones, because a muted alert is nobody's emergency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
