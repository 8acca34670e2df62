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
