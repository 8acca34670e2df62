"""Alertmanager notifications in the exact shape Alertmanager 0.25 sends, with a fresh group per test."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.incident import AlertmanagerWebhook, Notification

DATA = Path(__file__).parent / "data"


def am025(kind: str, group: str | None = None) -> dict[str, Any]:
    """One of firing / partial / resolved; `group` makes the groupKey unique to the test."""
    payload: dict[str, Any] = json.loads((DATA / f"alertmanager-0.25-{kind}.json").read_text())
    if group:
        payload["groupKey"] = payload["groupKey"].replace("HighErrorRate", f"HighErrorRate-{group}")
    return payload


def unique_group() -> str:
    return uuid.uuid4().hex[:10]


def simple(status: str = "firing", group: str | None = None, **labels: str) -> dict[str, Any]:
    payload = am025("firing", group or unique_group())
    payload = copy.deepcopy(payload)
    payload["alerts"] = payload["alerts"][:1]
    payload["alerts"][0]["labels"].update(labels)
    if status == "resolved":
        payload["status"] = "resolved"
        payload["alerts"][0]["status"] = "resolved"
        payload["alerts"][0]["endsAt"] = "2026-11-28T04:09:12Z"
    return payload


def note(payload: dict[str, Any]) -> Notification:
    """`payload` as the worker receives it: a Notification stamped now."""
    return Notification(
        received_at=datetime.now(UTC), notification=AlertmanagerWebhook.model_validate(payload)
    )


def node_outage(group: str, alerts: int, *, resolved: int = 0) -> dict[str, Any]:
    """One group of `alerts` KubePodNotReady alerts shaped as kube-prometheus sends them (a node
    outage grouped by alertname: ~1.1 KB per alert, see bench/webhook_size.py); the last
    `resolved` of them already resolved."""
    from bench.webhook_size import kube_alert

    out = []
    for i in range(alerts):
        alert = kube_alert(i)
        status = "resolved" if i >= alerts - resolved else "firing"
        out.append(
            {
                **alert,
                "status": status,
                "startsAt": "2026-12-07T03:00:00Z",
                "endsAt": "2026-12-07T03:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                "fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, f"{group}/{i}").hex[:16],
            }
        )
    key = f'{{}}:{{alertname="KubePodNotReady",run="{group}"}}'
    return {
        "receiver": "selfheal",
        "status": "firing",
        "alerts": out,
        "groupLabels": {"alertname": "KubePodNotReady"},
        "commonLabels": {
            "alertname": "KubePodNotReady",
            "prometheus": "monitoring/k8s",
            "severity": "warning",
        },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-main-0:9093",
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
    }
