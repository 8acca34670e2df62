"""Local activities that fail the way activities do.

A failed activity raises `ActivityError` (its cause says what happened), and the workflows here
catch exactly that to record the failure and go on (escalate, roll back). A failed *local*
activity raises its own `ApplicationError` (or `TimeoutError`) instead, which such a handler lets
through, and a `FailureError` escaping a workflow fails the whole workflow: an unreachable
Alertmanager would have failed the fix instead of escalating with "nothing was changed"."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError


async def execute_local(name: str, arg: Any, **options: Any) -> Any:
    """`workflow.execute_local_activity`, raising `ActivityError` (caused by the failure) on failure."""
    try:
        return await workflow.execute_local_activity(name, arg, **options)
    except ActivityError:
        raise
    except FailureError as err:
        raise ActivityError(
            f"local activity {name} failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=name,
            activity_id="",
            retry_state=None,
        ) from err
