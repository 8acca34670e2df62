"""The shipped library while the schema catches up: which playbooks use syntax not implemented yet.

Issue 12 adds the `kube` and `kube_wait` action kinds and `from: query` params on other branches; the
library is written against that agreed syntax. Until the schema has them, a library playbook using
them cannot load, so the tests that need it (or need the whole library to load) skip, saying why, and
run as soon as the schema supports the syntax. Detection reads the schema's declared structure, not a
trial validation, so a schema that has the kind but rejects a playbook still fails the tests.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from models.incident import AlertmanagerWebhook, WebhookAlert
from playbooks import schema
from playbooks.loader import LIBRARY_DIR, load_file, load_playbooks
from playbooks.matcher import PlaybookSet

LIBRARY_FILES = sorted(LIBRARY_DIR.glob("*.yaml"))
SAMPLES_DIR = LIBRARY_DIR / "samples"


def schema_supports(feature: str) -> bool:
    """`kube`, `kube_wait` (action kinds) or `query` (a param source) in the schema as it is now."""
    if feature == "query":
        source = schema.ParamSpec.model_fields.get("source")
        literal = get_args(source.annotation) if source is not None else ()
        return "query" in literal or "query" in schema.ParamSpec.model_fields
    steps = (schema.FixStep, schema.DeployStep, schema.RollbackStep)
    return feature in schema.ACTION_KINDS or any(feature in step.model_fields for step in steps)


def pending_syntax(path: Path) -> set[str]:
    """The features of the agreed syntax (see `schema_supports`) that the playbook file uses."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    used = set()
    for phase in ("fix", "test", "deploy", "rollback"):
        steps = data.get(phase)
        for step in steps if isinstance(steps, list) else []:
            used |= {kind for kind in ("kube", "kube_wait") if kind in step}
    if any(p.get("from") == "query" for p in (data.get("params") or {}).values()):
        used.add("query")
    return used


def missing_syntax(path: Path) -> set[str]:
    return {feature for feature in pending_syntax(path) if not schema_supports(feature)}


def skip_reason(missing: set[str]) -> str:
    return (
        f"the schema does not support {', '.join(sorted(missing))} yet (issue 12, other branches);"
        " runs once it does"
    )


def needs_syntax_of(path: Path) -> pytest.MarkDecorator:
    """Skip a test of one library playbook until the schema supports the syntax it uses."""
    missing = missing_syntax(path)
    return pytest.mark.skipif(bool(missing), reason=skip_reason(missing))


def _library_missing() -> set[str]:
    return set().union(*(missing_syntax(p) for p in LIBRARY_FILES))


#: For tests that load the whole library (the CLI, the worker's settings, the evals).
needs_full_library = pytest.mark.skipif(bool(_library_missing()), reason=skip_reason(_library_missing()))


@cache
def loadable_library() -> PlaybookSet:
    """The whole library when the schema supports it; else the playbooks that load today."""
    if not _library_missing():
        return load_playbooks([], include_library=True)
    playbooks = []
    for path in LIBRARY_FILES:
        if missing_syntax(path):
            continue
        playbook, errors = load_file(path)
        assert playbook is not None, errors
        playbooks.append(playbook)
    return PlaybookSet(playbooks)


def sample_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((SAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return body


def sample_alert(name: str, **labels: str) -> WebhookAlert:
    """The first alert of the playbook's sample, with `labels` replacing or adding label values."""
    alert = AlertmanagerWebhook.model_validate(sample_body(name)).alerts[0]
    return alert.model_copy(update={"labels": {**alert.labels, **labels}}) if labels else alert


def kube_state_metrics(alert: WebhookAlert) -> Any:
    """What kube-state-metrics answers an owner query with, for the sample's objects: a pod
    `api-7d9c8b6f5d-x2kq9` belongs to Deployment `api` (through its ReplicaSet), a Job
    `nightly-report-29541120` to CronJob `nightly-report`, a Service's pods to its namesake."""
    labels = alert.labels
    if "pod" in labels:
        owner = "-".join(labels["pod"].split("-")[:-2])
    elif "job_name" in labels:
        owner = "-".join(labels["job_name"].split("-")[:-1])
    else:
        owner = labels.get("service", "")

    def query(promql: str) -> list[dict[str, str]]:
        assert "owner_name" in promql, promql
        return [{"owner_name": owner}]

    return query
