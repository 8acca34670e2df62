"""Starting an incident workflow directly and watching it, as the workflow tests do (no API)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from models.incident import IncidentView
from models.incident_state import IncidentInput, IncidentPolicySnapshot
from tests.support.payloads import note
from workflows.incident import IncidentWorkflow


async def start_incident(
    client: Client,
    task_queue: str,
    payload: dict[str, Any],
    policy: IncidentPolicySnapshot | None = None,
    suffix: str = "test",
) -> WorkflowHandle[Any, Any]:
    """An incident for a new group, started by its first notification (as the API does)."""
    gid = uuid.uuid4().hex[:12]
    return await client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(incident_id=f"{gid}-{suffix}", group_id=gid, policy=policy or IncidentPolicySnapshot()),
        id=f"incident-{gid}",
        task_queue=task_queue,
        start_signal="notify",
        start_signal_args=[note(payload)],
    )


async def view_when(handle: WorkflowHandle[Any, Any], pred: Any, timeout: float = 60) -> IncidentView:
    """Query the incident until `pred(view)` holds (a condition with a deadline, not a sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        view: IncidentView = await handle.query(IncidentWorkflow.view)
        if pred(view):
            return view
        assert asyncio.get_running_loop().time() < deadline, [(e.kind, e.message) for e in view.timeline]
        await asyncio.sleep(0.1)


def kinds(view: IncidentView) -> list[str]:
    return [e.kind for e in view.timeline]
