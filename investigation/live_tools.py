"""The LLM investigator's live, read-only tools, and the registry that hands them their clients.

The tool functions the model sees live in `investigation/agent.py`; pydantic-ai's Temporal integration
runs each call as an activity on the worker, where it lands here. Everything is read-only:
PromQL/LogQL queries, a trace search, the incident store, and `git log/show/diff` over the
configured repositories. Model-chosen arguments are validated before they reach git (a ref or
path starting with `-` is refused, refs are resolved to a commit id first, paths go after `--`),
so model output can never become an option. Every result is redacted and capped by the caller.

Why a registry: the durable agent is one object shared by every worker in the process, and its
tools are plain functions pydantic-ai turns into activities, so they cannot take constructor
arguments. `build_worker` registers an `LlmRuntime` (the worker's clients and model) per task
queue and the tools look theirs up by `activity.info().task_queue`, so no URL or key ever travels
through workflow history. It lives here, beside the agent, so the agent needs no activity module.
Connectors are imported only where used: the workflow sandbox loads the agent, and with it this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio import activity

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from connectors.git.history import GitHistory
    from connectors.incident_store import IncidentStore
    from connectors.loki import LokiClient
    from connectors.prometheus import PrometheusClient
    from connectors.traces import TraceSearcher

MAX_GIT_COUNT = 50


class ToolInputError(ValueError):
    """A tool argument the model chose is not acceptable; the message goes back to the model."""


@dataclass
class LlmRuntime:
    """What the investigator's activities need on this worker, built by the app from its settings.

    `model` and `incident_store` are called on use, so the model and the store are built only
    when an investigation needs them. A backend left as None answers "not configured".
    """

    model: Callable[[], Model]
    incident_store: Callable[[], IncidentStore]
    prometheus: PrometheusClient | None = None
    loki: LokiClient | None = None
    traces: TraceSearcher | None = None
    #: Repository name → local clone: remediation repos plus evidence change repos.
    repos: Mapping[str, Path] = field(default_factory=dict)
    redact_emails: bool = False


_RUNTIMES: dict[str, LlmRuntime] = {}


def register_runtime(task_queue: str, runtime: LlmRuntime) -> LlmRuntime:
    """Make `runtime` serve the investigator's activities scheduled on `task_queue`."""
    _RUNTIMES[task_queue] = runtime
    return runtime


def current_runtime() -> LlmRuntime:
    """The runtime of the task queue the running activity was scheduled on."""
    if not activity.in_activity():
        raise RuntimeError("the LLM investigator's live tools only run inside a worker activity")
    queue = activity.info().task_queue
    runtime = _RUNTIMES.get(queue)
    if runtime is None:
        raise RuntimeError(f"no LLM investigator runtime registered for task queue {queue!r}")
    return runtime


# ------------------------------------------------------------------------------- validation


def _repo_path(runtime: LlmRuntime, name: str) -> Path:
    known = runtime.repos
    if name not in known:
        raise ToolInputError(f"unknown repository {name!r}; configured: {sorted(known) or 'none'}")
    return known[name]


# ------------------------------------------------------------------------------------ tools


def prometheus_query(runtime: LlmRuntime, promql: str, at: datetime | None = None) -> str:
    """The value of every series of an instant query (at the newest sample of the last 5 minutes)."""
    client = runtime.prometheus
    if client is None:
        return "no Prometheus configured"
    end = at or datetime.now(UTC)
    series = client.query_range(promql, end - timedelta(minutes=5), end, step=30)
    if not series:
        return "empty result"
    lines = [f"{_labels(s.labels)} {s.samples[-1][1]:g}" for s in series if s.samples]
    return "\n".join(lines) or "empty result"


def prometheus_range(runtime: LlmRuntime, promql: str, start: datetime, end: datetime, step: float) -> str:
    client = runtime.prometheus
    if client is None:
        return "no Prometheus configured"
    series = client.query_range(promql, start, end, step=step)
    if not series:
        return "empty result"
    out = []
    for s in series:
        points = ", ".join(
            f"{datetime.fromtimestamp(t, UTC).strftime('%H:%M:%S')}={v:g}" for t, v in s.samples
        )
        out.append(f"{_labels(s.labels)}: {points}")
    return "\n".join(out)


def loki_query(runtime: LlmRuntime, logql: str, start: datetime, end: datetime, limit: int) -> str:
    from investigation.sources.base import failure_message
    from investigation.sources.logs import gather_logs

    client = runtime.loki
    if client is None:
        return "no Loki configured"
    try:
        section = gather_logs(client, logql, start, end, max_lines=limit, emails=runtime.redact_emails)
    except Exception as exc:
        return f"query failed: {failure_message(exc)}"
    lines = [
        f"{line.at.isoformat()} {_labels(line.labels)} {line.line}"
        + (f" (x{line.count})" if line.count > 1 else "")
        for line in section.logs
    ]
    return "\n".join([section.message, *lines])


def search_traces(runtime: LlmRuntime, service: str, start: datetime, end: datetime, limit: int) -> str:
    from investigation.sources.base import failure_message
    from investigation.sources.traces import gather_traces

    client = runtime.traces
    if client is None:
        return "no trace backend configured"
    try:
        section = gather_traces(client, service, start, end, limit=limit)
    except Exception as exc:
        return f"search failed: {failure_message(exc)}"
    rows = [
        f"traces:{t.trace_id} service={t.root_service} op={t.root_name} {t.duration_ms:.0f}ms "
        f"started={t.started.isoformat() if t.started else '?'} {t.url}"
        for t in section.traces
    ]
    return "\n".join([section.message or section.status, *rows])


def recent_changes(runtime: LlmRuntime, before: datetime, hours: float, repo: str | None) -> str:
    from investigation.changes import gather_changes

    selected = dict(runtime.repos)
    if repo is not None:
        selected = {repo: _repo_path(runtime, repo)}
    # No diffs here: the model reads one with git_show when it wants it.
    section = gather_changes(selected, before=before, window_seconds=hours * 3600, limit=20, diffs=False)
    if section.status in ("failed", "skipped"):
        return f"{section.status}: {section.message}"
    rows = [
        f"changes:{c.repo}@{c.sha[:12]} {c.committed_at.isoformat()} {c.author}: {c.summary} "
        f"(+{c.insertions}/-{c.deletions}; {', '.join(c.paths[:10])})"
        for c in section.changes
    ]
    return "\n".join([section.message or f"{len(rows)} commits", *rows]) if rows else "no commits in window"


def _git(runtime: LlmRuntime, repo: str, read: Callable[[GitHistory], str]) -> str:
    """Run a read on the repository's history (connectors.git: its git environment and timeouts)."""
    from connectors.git.history import GitHistory, InvalidInput
    from connectors.git.process import GitError

    path = _repo_path(runtime, repo)
    try:
        return read(GitHistory(path))
    except InvalidInput as exc:
        raise ToolInputError(str(exc)) from exc
    except GitError as exc:
        raise ToolInputError(f"{repo}: {exc}") from exc


def _checked(*revs: str, path: str | None) -> None:
    """Refuse a bad revision or path before anything else, as the model's mistake it is."""
    from connectors.git.history import InvalidInput, check_path, check_rev

    try:
        for rev in revs:
            check_rev(rev)
        if path is not None:
            check_path(path)
    except InvalidInput as exc:
        raise ToolInputError(str(exc)) from exc


def git_log(runtime: LlmRuntime, repo: str, rev: str, path: str | None, max_count: int) -> str:
    _checked(rev, path=path)
    count = max(1, min(max_count, MAX_GIT_COUNT))
    return _git(runtime, repo, lambda history: history.log(rev, path=path, max_count=count) or "no commits")


def git_show(runtime: LlmRuntime, repo: str, rev: str, path: str | None) -> str:
    _checked(rev, path=path)
    return _git(runtime, repo, lambda history: history.show(rev, path=path))


def git_diff(runtime: LlmRuntime, repo: str, base: str, head: str, path: str | None) -> str:
    _checked(base, head, path=path)
    return _git(runtime, repo, lambda history: history.diff(base, head, path=path) or "no differences")


def past_incident(runtime: LlmRuntime, incident_id: str) -> str:
    row = runtime.incident_store().get(incident_id)
    if row is None:
        return f"no closed incident {incident_id!r} in the incident store"
    return json.dumps(
        {
            "id": row.id,
            "title": row.title,
            "service": row.service,
            "alertname": row.alertname,
            "outcome": row.outcome,
            "fix": row.fix,
            "closed_at": row.closed_at.isoformat() if row.closed_at else None,
            "text": row.text,
        },
        indent=1,
    )


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
