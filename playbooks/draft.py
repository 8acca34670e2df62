"""A playbook drafted from an incident that an approved fix healed: the loop learns.

An on-call who approved a revert has written a playbook nobody captured. This module writes it
down: the alert's name exact, the labels that identify the pattern as matchers, instance-specific
values (pod names, instances, fingerprints) as params whose patterns are derived from the values
(never `.*`), the fix generalized (a revert of one commit becomes a `git_revert` of a short window
over the paths that commit touched, templated with params; a patch, which fits only the code it
was written against, is kept but only suggested), the service's test/deploy/verify, `mode: approve`
and a conservative circuit breaker. Untrusted text (label values, paths) is data: it goes only into
matchers (escaped), param patterns derived from it, and quoted YAML strings, never into a template,
a comment or a pattern verbatim. `lint_draft` runs the real loader on the file and checks it matches
the alert it was drafted from; a draft that fails either is never proposed.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from models.incident import IncidentView, Outcome, TrackedAlert, WebhookAlert
from playbooks.loader import check_paths
from playbooks.matcher import PlaybookSet
from playbooks.proposal import ServiceDefaults, verify_data
from playbooks.schema import (
    CONTROL,
    LABEL_NAME,
    NAME_PATTERN,
    PARAM_NAME,
    REPO_PATTERN,
    RESERVED_NAMES,
    LabelMatcher,
    format_duration,
)

#: The plans of an investigation's proposal (`playbooks/proposal.py`): what a draft is made from.
PROPOSAL_PLAYBOOKS = ("proposed-revert", "proposed-patch")
#: The drafted playbook's circuit breaker: a learned fix runs at most twice a day, an hour apart.
DRAFT_MAX_RUNS = 2
DRAFT_WINDOW = "1d"
DRAFT_COOLDOWN = "1h"
#: The revert window: a few times how long before the alert the reverted commit landed, at least
#: 10 minutes and at most a day (a bad change older than that is not the same shape).
MIN_WINDOW_SECONDS = 600.0
MAX_WINDOW_SECONDS = 86400.0
#: More paths than this is not a pattern but a release: such a revert is not drafted.
MAX_PATHS = 20
#: Labels that name one instance of the pattern: params (validated by pattern), never matchers.
INSTANCE_LABELS = frozenset(
    {
        "instance",
        "exported_instance",
        "pod",
        "pod_name",
        "exported_pod",
        "pod_ip",
        "host_ip",
        "ip",
        "address",
        "host",
        "hostname",
        "node",
        "nodename",
        "uid",
        "pod_uid",
        "container_id",
        "id",
        "image_id",
        "fingerprint",
        "replicaset",
        "job_name",
        "endpoint",
    }
)
#: Labels that name the Prometheus (or replica) that evaluated the rule: neither matcher nor param.
DROPPED_LABELS = frozenset({"prometheus_replica", "replica", "receive", "__replica__"})
#: A label value longer than this is no name: left out of the draft.
MAX_VALUE_CHARS = 253

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_IPV4 = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]{1,5})?$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
#: A pod (`<deployment>-<pod-template-hash>-<5 chars>`) or a replica set (`<deployment>-<hash>`).
_GENERATED_NAME = re.compile(r"^[a-z0-9][-a-z0-9]*-[a-z0-9]{6,10}(-[a-z0-9]{5})?$")
_HASHLIKE = re.compile(r"(^|[^0-9a-f])[0-9a-f]{12,}([^0-9a-f]|$)")
#: Characters a generic (non-name) value may hold for a pattern to be derived from it.
_SAFE_PUNCT = "._:/@-"
#: Paths a draft may name in `git_revert.paths`: no glob or template characters, nothing odd.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_@+=,][A-Za-z0-9_@+=,./ -]{0,299}$")

PATTERN_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
PATTERN_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
PATTERN_IPV4 = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]{1,5})?$"
PATTERN_HOST_PORT = r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$"
PATTERN_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
PATTERN_HEX = r"^[0-9a-f]{8,64}$"


class DraftRefused(Exception):
    """No playbook can be drafted from this incident; the message says why, in one line."""


@dataclass(frozen=True)
class CommitFacts:
    """What git says about the reverted commit: the paths it touched and when it landed."""

    paths: tuple[str, ...]
    committed_at: datetime


#: Looks a commit up in a configured repository: (repo name, full sha) → its facts.
CommitLookup = Callable[[str, str], CommitFacts]


@dataclass(frozen=True)
class DraftSource:
    """The facts of a healed incident a draft is made from (all from the incident's own view)."""

    incident_id: str
    ticket_key: str
    alert: TrackedAlert
    service: str
    service_label: str
    kind: str  # revert | patch
    repo: str
    sha: str = ""
    patch: str = ""
    approved_by: str = ""


@dataclass
class Draft:
    """A drafted playbook: its name, file name and YAML text, with the notes its header carries."""

    name: str
    kind: str
    text: str
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return f"{self.name}.yaml"


def healed_by_approved_proposal(view: IncidentView) -> bool:
    """The incident closed healed by an approved run of an investigation's proposal."""
    last = view.remediations[-1] if view.remediations else None
    return (
        view.outcome == Outcome.HEALED_AFTER_APPROVAL
        and last is not None
        and last.outcome == "healed"
        and bool(last.approved_by)
        and last.playbook in PROPOSAL_PLAYBOOKS
    )


def source_from_view(view: IncidentView, *, service_label: str) -> DraftSource:
    """The draft's facts from a closed incident's view; DraftRefused when it was not healed by an
    approved proposal (a playbook's own run teaches nothing new)."""
    if not healed_by_approved_proposal(view):
        outcome = view.outcome.value if view.outcome is not None else "open"
        raise DraftRefused(
            f"incident {view.id} was not healed by an approved proposed fix (outcome: {outcome})"
        )
    fix = view.investigation.proposed_fix if view.investigation is not None else None
    kind = fix.runnable_kind() if fix is not None else None
    if fix is None or kind is None:
        raise DraftRefused(f"incident {view.id} has no proposed revert or patch to learn from")
    alert = next((a for a in view.alerts if a.labels.get("alertname") == view.alertname), None)
    if alert is None:
        raise DraftRefused(f"incident {view.id} has no alert named {view.alertname!r}")
    last = view.remediations[-1]
    kind_fields = (
        {"kind": "patch", "repo": fix.repo or "", "patch": fix.patch or ""}
        if kind == "patch"
        else {
            "kind": "revert",
            "repo": fix.revert.repo if fix.revert else "",
            "sha": fix.revert.sha if fix.revert else "",
        }
    )
    return DraftSource(
        incident_id=view.id,
        ticket_key=view.ticket.key if view.ticket is not None else "",
        alert=alert,
        service=view.service,
        service_label=service_label,
        approved_by=last.approved_by or "",
        **kind_fields,
    )


# --- labels → matchers and params ---------------------------------------------------------------


def value_pattern(value: str) -> str | None:
    """A pattern describing values like this one (a k8s name, an address, a hex id…), or None when
    the value holds characters no safe pattern should accept. Never `.*`."""
    if not value or len(value) > MAX_VALUE_CHARS or CONTROL.search(value):
        return None
    for regex, pattern in (
        (_UUID, PATTERN_UUID),
        (_HEX, PATTERN_HEX),
        (_IPV4, PATTERN_IPV4),
        (_DNS_LABEL, PATTERN_DNS_LABEL),
        (_DNS_SUBDOMAIN, PATTERN_DNS_SUBDOMAIN),
        (_HOST_PORT, PATTERN_HOST_PORT),
    ):
        if regex.fullmatch(value):
            return pattern
    classes = []
    if re.search("[a-z]", value):
        classes.append("a-z")
    if re.search("[A-Z]", value):
        classes.append("A-Z")
    if re.search("[0-9]", value):
        classes.append("0-9")
    for char in _SAFE_PUNCT:
        if char in value:
            classes.append("\\" + char if char in "-." else char)
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + _SAFE_PUNCT)
    if any(c not in allowed for c in value):
        return None
    limit = 63 if len(value) <= 63 else MAX_VALUE_CHARS
    return f"^[{''.join(classes)}]{{1,{limit}}}$"


def is_instance_label(key: str, value: str) -> bool:
    """Whether the label names one instance (a pod, a host, an id) rather than the pattern."""
    lowered = key.lower()
    if lowered in INSTANCE_LABELS or lowered.endswith(("_id", "_uid", "_ip", "_pod", "_instance")):
        return True
    return bool(
        _UUID.fullmatch(value)
        or _IPV4.fullmatch(value)
        or _HOST_PORT.fullmatch(value)
        or _HEX.fullmatch(value)
        or _HASHLIKE.search(value)
        or _GENERATED_NAME.fullmatch(value)
    )


def param_name(key: str, taken: Collection[str]) -> str | None:
    """A param name for label `key` (lowercased, `_` for anything else), unique; None if none fits."""
    name = re.sub(r"[^a-z0-9_]", "_", key.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"label_{name}".rstrip("_")
    name = name[:60]
    if name in RESERVED_NAMES:
        name = f"{name}_label"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate if PARAM_NAME.fullmatch(candidate) else None


@dataclass
class Generalized:
    matchers: list[str] = field(default_factory=list)
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def generalize_labels(labels: Mapping[str, str], *, service_label: str, service: str) -> Generalized:
    """Matchers for the labels that identify the pattern (exact, escaped), params with derived
    patterns for the instance-specific ones; the service becomes param `service`, pinned by a
    matcher too (its test/deploy/verify are that service's)."""
    out = Generalized()
    service_pattern = value_pattern(service)
    if service_pattern is None:
        raise DraftRefused("the service name is not one selfheal can describe with a safe pattern")
    out.params["service"] = {"from": "label", "key": service_label, "pattern": service_pattern}
    for key in sorted(labels):
        value = labels[key]
        if key == "alertname" or key in DROPPED_LABELS or value == "":
            continue
        if not LABEL_NAME.fullmatch(key):
            out.notes.append("a label whose name is not a valid label name was left out")
            continue
        if key == service_label or not is_instance_label(key, value):
            if len(value) > MAX_VALUE_CHARS or CONTROL.search(value):
                out.notes.append(f"label {key} was left out: its value is too long or has control characters")
                continue
            out.matchers.append(str(LabelMatcher(name=key, op="=", value=value)))
            continue
        pattern = value_pattern(value)
        name = param_name(key, out.params)
        if pattern is None or name is None:
            out.notes.append(
                f"label {key} was left out: its value is instance-specific and fits no safe pattern"
            )
            continue
        out.params[name] = {"from": "label", "key": key, "pattern": pattern}
        out.notes.append(f"label {key} is instance-specific: a param (pattern {pattern}), not a matcher")
    return out


# --- the fix --------------------------------------------------------------------------------------


def revert_window(committed_at: datetime, alert_start: datetime) -> str:
    """`since` for the drafted revert: three times how long before the alert the change landed,
    whole minutes, within [10m, 1d]."""
    gap = max(0.0, (_utc(alert_start) - _utc(committed_at)).total_seconds())
    seconds = min(MAX_WINDOW_SECONDS, max(MIN_WINDOW_SECONDS, 3 * gap))
    return format_duration(60 * math.ceil(seconds / 60))


def templated_path(path: str, params: Mapping[str, str]) -> str:
    """`services/shop/config.yaml` → `services/{{ params.service }}/config.yaml`: a path segment
    (or its stem) equal to a param's value becomes that param. Values shorter than 3 characters
    are left alone (too likely to be a coincidence)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        for name, value in params.items():
            if len(value) < 3:
                continue
            if part == value:
                parts[i] = f"{{{{ params.{name} }}}}"
                break
            stem, dot, ext = part.partition(".")
            if dot and stem == value:
                parts[i] = f"{{{{ params.{name} }}}}.{ext}"
                break
    return "/".join(parts)


def revert_step(
    source: DraftSource, facts: CommitFacts, params: Mapping[str, str]
) -> tuple[dict[str, Any], str]:
    """The generalized revert: the window before the alert over the paths the commit touched."""
    paths = sorted(set(facts.paths))
    if not paths:
        raise DraftRefused(f"commit {source.sha[:12]} touched no file to watch")
    if len(paths) > MAX_PATHS:
        raise DraftRefused(f"commit {source.sha[:12]} touched {len(paths)} files (more than {MAX_PATHS})")
    unsafe = [p for p in paths if not _SAFE_PATH.fullmatch(p) or ".." in p.split("/")]
    if unsafe:
        raise DraftRefused(
            f"commit {source.sha[:12]} touched {len(unsafe)} path(s) with characters a path glob or a"
            " template would read as syntax"
        )
    since = revert_window(facts.committed_at, source.alert.startsAt)
    step = {
        "name": f"revert the {since} of changes before the alert to the files the last fix reverted",
        "git_revert": {
            "since": since,
            "paths": [templated_path(p, params) for p in paths],
            "max_commits": 1,
        },
    }
    return step, since


# --- the playbook -------------------------------------------------------------------------------


def draft_name(service: str, alertname: str, kind: str, taken: Collection[str] = ()) -> str:
    """`<service>-<alert-name>-<kind>` in kebab case (`shop-high-latency-revert`), unique among
    `taken`, fitting the playbook name pattern."""
    kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", alertname)
    base = re.sub(r"[^a-z0-9]+", "-", f"{service}-{kebab}".lower()).strip("-")
    suffix = "-revert" if kind == "revert" else "-patch"
    base = (base[: 63 - len(suffix) - 3].rstrip("-") or "drafted") + suffix
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    if not re.fullmatch(NAME_PATTERN, name):
        raise DraftRefused(f"no valid playbook name could be made for {alertname!r} on {service!r}")
    return name


def build_draft(
    source: DraftSource,
    defaults: ServiceDefaults,
    *,
    commit: CommitLookup,
    taken: Collection[str] = (),
) -> Draft:
    """The drafted playbook's YAML; DraftRefused when the fix cannot be generalized."""
    if not re.fullmatch(REPO_PATTERN, source.repo):
        raise DraftRefused(f"repository name {source.repo!r} is not valid")
    if defaults.repo != source.repo:
        raise DraftRefused(f"the fix changed {source.repo!r}, but the service deploys from {defaults.repo!r}")
    labels = source.alert.labels
    alertname = labels.get("alertname", "")
    general = generalize_labels(labels, service_label=source.service_label, service=source.service)
    name = draft_name(source.service, alertname, source.kind, taken)
    values = {"service": source.service}
    notes = [
        f"Drafted by selfheal from incident {_safe(source.incident_id)}"
        + (f" (ticket {_safe(source.ticket_key)})" if source.ticket_key else "")
        + (
            f", healed by a {source.kind} approved by {_safe(source.approved_by)}."
            if source.approved_by
            else "."
        ),
        "Review it before merging: matchers, params and the revert window are generalized from one incident.",
    ]
    if source.kind == "revert":
        facts = commit(source.repo, source.sha)
        fix, since = revert_step(source, facts, values)
        mode = "approve"
        notes.append(
            f"The fix reverted {source.repo}@{source.sha[:12]}; as a playbook it reverts the one commit"
            f" of the {since} before the alert touching the same files (more than one: a human decides)."
        )
        description = (
            f"{alertname} on {source.service}: revert the change made shortly before the alert to the"
            f" files an approved revert fixed last time (learned from incident {source.incident_id})."
        )
    else:
        fix = {"name": "apply the patch that fixed it last time", "git_apply": {"patch": source.patch}}
        mode = "suggest"
        notes.append(
            "The fix was a patch: it fits only the code it was written against, so this playbook only"
            " suggests it (mode: suggest). Replace the fix with a reusable step before raising the mode."
        )
        description = (
            f"{alertname} on {source.service}: the patch an approver applied last time, suggested only"
            f" (learned from incident {source.incident_id})."
        )
    notes.extend(general.notes)
    data: dict[str, Any] = {
        "apiVersion": "selfheal/v1",
        "kind": "Playbook",
        "name": name,
        "description": description,
        "category": "drafted",
        "match": {"alertname": alertname, "matchers": general.matchers},
        "target": "{{ params.service }}",
        "repo": source.repo,
        "params": general.params,
        "policy": {
            "mode": mode,
            "max_runs": DRAFT_MAX_RUNS,
            "window": DRAFT_WINDOW,
            "cooldown": DRAFT_COOLDOWN,
            "require_firing": True,
        },
        "fix": [fix],
        "test": [step_data(s) for s in defaults.test],
        "deploy": [step_data(s) for s in defaults.deploy],
        "verify": {
            **verify_data(defaults.verify, source.service_label),
            "hold_for": duration_text(defaults.verify.hold_for),
            "timeout": duration_text(defaults.verify.timeout),
        },
        "rollback": "auto",
    }
    header = "".join(f"# {_safe(line)}\n" for line in notes)
    body = yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=False, default_flow_style=False)
    return Draft(name=name, kind=source.kind, text=header + body, data=data, notes=notes)


def step_data(step: Any) -> dict[str, Any]:
    """A validated step back to playbook YAML data: what its author set, durations as text."""
    dumped: dict[str, Any] = _durations(step.model_dump(by_alias=True, exclude_unset=True, mode="python"))
    return dumped


def _durations(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _durations(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_durations(v) for v in value]
    if key == "timeout" and isinstance(value, float):
        return duration_text(value)
    return value


def duration_text(seconds: float) -> str:
    """Seconds as a duration the schema parses back to the same value (`30s`, `1500ms`)."""
    if seconds == int(seconds):
        return format_duration(seconds)
    return f"{round(seconds * 1000)}ms"


def lint_draft(
    draft: Draft,
    alert: TrackedAlert,
    *,
    known_repos: Collection[str] | None,
    kube_namespaces: Collection[str] | None = None,
    settings_ctx: dict[str, str] | None = None,
) -> list[str]:
    """Problems of the draft as `selfheal playbooks lint` reports them (the real loader on the
    file), then whether it matches the alert it was drafted from; [] when it may be proposed."""
    with tempfile.TemporaryDirectory(prefix="selfheal-draft-") as tmp:
        path = Path(tmp) / draft.filename
        path.write_text(draft.text, encoding="utf-8")
        report = check_paths([path], known_repos=known_repos, kube_namespaces=kube_namespaces)
        errors = [e.replace(str(path), draft.filename) for e in report.errors]
    if errors:
        return errors
    if len(report.playbooks) != 1:
        return [f"{draft.filename}: the loader found {len(report.playbooks)} playbooks, not one"]
    webhook_alert = WebhookAlert.model_validate(alert.model_dump())
    result = PlaybookSet(report.playbooks).match(webhook_alert, settings_ctx=settings_ctx)
    if result.playbook != draft.name:
        reasons = "; ".join(result.reasons[:3]) or "no reason given"
        return [f"{draft.filename}: does not match the alert it was drafted from: {reasons}"]
    return []


def _safe(text: str) -> str:
    """Text for a YAML comment line: printable, one line, bounded."""
    return CONTROL.sub(" ", text).replace("\u2028", " ").replace("\u2029", " ")[:300]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
