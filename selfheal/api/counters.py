"""The HTTP layer's Prometheus instruments, registered once per process in the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS = Counter(
    "selfheal_webhook_notifications_total", "Alertmanager notifications by result", ["result"]
)
DECISIONS = Counter(
    "selfheal_decisions_total", "Decisions by kind, source and result", ["decision", "source", "result"]
)
REQUEST_SECONDS = Histogram("selfheal_http_request_seconds", "HTTP request latency", ["route", "method"])
