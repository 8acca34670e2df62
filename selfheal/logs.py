"""structlog setup: JSON lines in production, readable console lines in dev.

Standard-library records (Temporal's workflow logger included) go through the same
processors, so every line carries the incident id when the caller bound or passed one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from pages.redact import redact
from selfheal.settings import Settings


def _lift_incident_id(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Temporal's workflow logger passes `extra={"incident_id": …}`; surface it as a key."""
    record = event_dict.get("_record")
    if record is not None and "incident_id" not in event_dict:
        value = getattr(record, "incident_id", None)
        if value:
            event_dict["incident_id"] = value
    return event_dict


def _with_component(component: str) -> Any:
    """A fixed processor, so lines from Temporal's workflow thread carry it too."""

    def add(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("component", component)
        return event_dict

    return add


def _lift_temporal_info(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Temporal's workflow/activity context as keys, not as dict text inside the message."""
    record = event_dict.get("_record")
    for attr in ("temporal_workflow", "temporal_activity"):
        info = getattr(record, attr, None) if record is not None else None
        if isinstance(info, dict):
            for key in ("workflow_id", "workflow_type", "run_id", "activity_type", "attempt"):
                if key in info:
                    event_dict.setdefault(key, info[key])
    return event_dict


def _redact_values(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Secrets in any string value (error texts quote URLs, headers, commit messages) never reach a log."""
    for key, value in event_dict.items():
        if isinstance(value, str) and not key.startswith("_"):
            event_dict[key] = redact(value)
    return event_dict


def configure_logging(settings: Settings, *, component: str = "") -> None:
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if settings.is_dev else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _lift_incident_id,
        _lift_temporal_info,
    ]
    if component:
        shared.append(_with_component(component))
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_values,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
