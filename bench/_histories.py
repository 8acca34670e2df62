"""What a heal costs Temporal: history events and their bytes per workflow, read back after a run.

Every history event is a write to the server's database and a payload the worker decodes, so
events and bytes per incident are the first place to look when CPU per heal is high. Shared by
the benchmarks (not a benchmark itself: the leading underscore keeps `bench.run` from running it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from models import ids


@dataclass
class HistoryStats:
    """Events and serialized bytes of some workflow histories, by event type and by activity."""

    workflows: int = 0
    events: int = 0
    bytes: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    bytes_by_type: Counter[str] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)
    activity_bytes: Counter[str] = field(default_factory=Counter)

    def add(self, history: WorkflowHistory) -> None:
        self.workflows += 1
        scheduled: dict[int, str] = {}
        for event in history.events:
            kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            size = event.ByteSize()
            self.events += 1
            self.bytes += size
            self.by_type[kind] += 1
            self.bytes_by_type[kind] += size
            if event.HasField("activity_task_scheduled_event_attributes"):
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = name
                self.activities[name] += 1
                self.activity_bytes[name] += size
            elif event.HasField("activity_task_completed_event_attributes"):
                name = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id, "?")
                self.activity_bytes[name] += size

    def per(self, n: int) -> dict[str, Any]:
        """The totals divided by `n` (incidents), rounded, the biggest first."""
        n = max(n, 1)
        return {
            "events": round(self.events / n, 1),
            "kib": round(self.bytes / n / 1024, 1),
            "events_by_type": {k: round(v / n, 1) for k, v in self.by_type.most_common(12)},
            "kib_by_type": {k: round(v / n / 1024, 1) for k, v in self.bytes_by_type.most_common(8)},
            "activities": {k: round(v / n, 1) for k, v in self.activities.most_common()},
            "activity_kib": {k: round(v / n / 1024, 1) for k, v in self.activity_bytes.most_common(8)},
        }


async def _history(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory | None:
    try:
        return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except Exception:  # a workflow that is gone (or never started) has nothing to count
        return None


async def heal_costs(
    address: str, incident_ids: list[str], targets: list[str], task_queue: str, sample: int = 20
) -> dict[str, Any]:
    """Events and bytes per heal: the incident workflow, its remediation child, and this run's
    share of the control workflow (all its runs since the stack started, divided by every heal)."""
    client = await Client.connect(address)
    picked = list(zip(incident_ids, targets, strict=True))[:sample]
    incident, remediation, control = HistoryStats(), HistoryStats(), HistoryStats()
    for incident_id, target in picked:
        group = ids.parse_incident_id(incident_id) or ""
        for stats, wf_id in (
            (incident, ids.workflow_id_for_group(group)),
            (remediation, ids.remediation_workflow_id(target)),
        ):
            found = await _history(client, wf_id)
            if found is not None:
                stats.add(found)
    async for wf in client.list_workflows(f"WorkflowId = '{ids.control_workflow_id(task_queue)}'"):
        found = await _history(client, wf.id, wf.run_id)
        if found is not None:
            control.add(found)
    n_sampled = max(len(picked), 1)
    total = incident.events + remediation.events
    total_bytes = incident.bytes + remediation.bytes
    n_all = max(len(incident_ids), 1)
    return {
        "sampled_incidents": len(picked),
        "events_per_heal": round(total / n_sampled + control.events / n_all, 1),
        "kib_per_heal": round((total_bytes / n_sampled + control.bytes / n_all) / 1024, 1),
        "incident_workflow": incident.per(n_sampled),
        "remediation_workflow": remediation.per(n_sampled),
        "control_workflow": {**control.per(n_all), "runs": control.workflows},
    }
