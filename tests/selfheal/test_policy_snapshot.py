"""Every field of the incident's policy snapshot arrives in the workflow from the settings.

Each field is set to a non-default value through the YAML config or a SELFHEAL_* variable (what
operators use), an incident is started through IncidentService against a real Temporal server,
and the snapshot is read back from the workflow's start input in its history. A field that
`policy_snapshot` drops arrives with its default and fails here; a new snapshot field fails until
it is added to SETTINGS (`remediation.lock_retry_seconds` was once lost this way).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.temporal import connect
from models import ids
from models.incident import AlertmanagerWebhook
from models.incident_state import IncidentInput, IncidentPolicySnapshot
from selfheal.incidents import IncidentService
from selfheal.settings import load_settings
from tests.support.payloads import simple

#: Snapshot field -> (settings path, a value that is not the default, where it is set). None: not a
#: setting. `ticket_retry_seconds` is a constant of the workflow: it keeps its default.
SETTINGS: dict[str, tuple[str, Any, str] | None] = {
    "decision_timeout_seconds": ("incident.decision_timeout_seconds", 987.5, "yaml"),
    "max_reescalations": ("incident.max_reescalations", 7, "yaml"),
    "resolve_quiet_seconds": ("incident.resolve_quiet_seconds", 42.5, "yaml"),
    "service_labels": ("incident.service_labels", ["team", "component"], "yaml"),
    "activity_timeout_seconds": ("incident.activity_timeout_seconds", 77.0, "env"),
    "continue_as_new_after_events": ("incident.continue_as_new_after_events", 1234, "yaml"),
    "max_concurrent": ("incident.max_concurrent", 3, "yaml"),
    "ticket_retry_seconds": None,
    "ui_url": ("temporal.ui_url", "https://temporal-ui.example:9443/", "env"),
    "namespace": ("temporal.namespace", "selfheal-prod", "yaml"),
    "lock_retry_seconds": ("remediation.lock_retry_seconds", 3.25, "env"),
    "investigator": ("investigation.investigator", "llm", "env"),
    "coding_agent": ("investigation.coding_agent.enabled", True, "yaml"),
}


def _put(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def test_the_map_names_every_snapshot_field_once() -> None:
    fields = set(IncidentPolicySnapshot.model_fields)
    missing = sorted(fields - SETTINGS.keys())
    assert not missing, f"snapshot fields with no settings path in SETTINGS: {missing}"
    stale = sorted(SETTINGS.keys() - fields)
    assert not stale, f"SETTINGS names fields the snapshot no longer has: {stale}"
    for name, entry in SETTINGS.items():
        if entry is not None:
            default = IncidentPolicySnapshot.model_fields[name].get_default(call_default_factory=True)
            assert entry[1] != default, f"{name}: the test value must differ from the default"


async def test_every_policy_field_reaches_the_workflow(
    temporal_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("SELFHEAL_")]:
        monkeypatch.delenv(name)
    config: dict[str, Any] = {
        "env": "dev",
        "data_dir": str(tmp_path / "data"),
        "temporal": {"address": temporal_address, "task_queue": "tq-policy-" + uuid.uuid4().hex[:10]},
        "investigation": {"llm": {"api_key": "test-key"}},
    }
    for entry in SETTINGS.values():
        if entry is None:
            continue
        path, value, source = entry
        if source == "yaml":
            _put(config, path, value)
        else:
            monkeypatch.setenv("SELFHEAL_" + path.upper().replace(".", "__"), str(value))
    config_path = tmp_path / "selfheal.yaml"
    config_path.write_text(yaml.safe_dump(config))
    settings = load_settings(config_path)

    # The service's client talks to the server's namespace; the setting only travels in the snapshot.
    client = await connect(settings.temporal.model_copy(update={"namespace": "default"}))
    service = IncidentService(client, settings)
    result = await service.ingest(AlertmanagerWebhook.model_validate(simple(alertname="PolicySnapshotProbe")))
    assert result.incident_id is not None
    handle = client.get_workflow_handle(ids.workflow_id_for_group(result.group_id))
    try:
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        (inp,) = await client.data_converter.decode(started.input.payloads, [IncidentInput])
    finally:
        await handle.terminate("policy snapshot read")
    assert isinstance(inp, IncidentInput) and inp.incident_id == result.incident_id

    arrived = inp.policy.model_dump()
    for name, entry in SETTINGS.items():
        if entry is None:
            default = IncidentPolicySnapshot.model_fields[name].get_default(call_default_factory=True)
            assert arrived[name] == default, name
        else:
            assert arrived[name] == entry[1], f"{name} (from {entry[0]}) did not reach the workflow"
