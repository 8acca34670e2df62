"""An investigation's proposed fix as a remediation plan, through the same checks as a playbook.

A proposal (revert one commit of a configured repository, or apply a patch to one) becomes a
playbook spec in memory: its fix, then the service's configured `test`, `deploy` and `verify`
(`remediation.services.<name>`), policy `approve`. The spec is validated like a playbook file and
rendered with `render_plan`, so every template, path, URL, branch and patch check applies, and
the workflow runs it as it runs any playbook. Nothing from the proposal reaches a template: the
commit id and the patch are literal action data, the service name a param checked against its
pattern, and commit messages only go into the description, which is never rendered.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from models.incident import TrackedAlert
from models.investigation import ProposedFix
from models.plan import RemediationPlan
from playbooks.render import RenderError, check_playbook, loc_str, render_plan
from playbooks.schema import (
    LABEL_NAME,
    REPO_PATTERN,
    Condition,
    DeployStep,
    Duration,
    Playbook,
    PlaybookSpec,
    Spec,
    TestStep,
    invalid,
)

#: A service name as `remediation.services` keys it and as a proposal plan takes it from the alert.
SERVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
#: An alertname that may stand in the default verify query (no quotes, braces or backslashes).
ALERTNAME_PATTERN = r"^[A-Za-z_:][A-Za-z0-9_:.-]{0,199}$"
ProposalKind = Literal["revert", "patch"]


class ServiceVerify(Spec):
    """How a fix for the service is verified. Without `query`: the alert resolves and stays
    resolved for `hold_for` (its `ALERTS` series gone in Prometheus, then Alertmanager asked)."""

    query: str | None = Field(default=None, min_length=1)
    condition: Condition | None = None
    hold_for: Duration = 60.0
    timeout: Duration = 600.0
    alert_resolved: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ServiceVerify:
        if (self.query is None) != (self.condition is None):
            raise invalid("query and condition go together (or neither: the alert must resolve)")
        if self.timeout <= 0:
            raise invalid("timeout: must be positive")
        if self.hold_for > self.timeout:
            raise invalid("timeout: shorter than hold_for, so verification could never pass")
        return self


class ServiceDefaults(Spec):
    """`remediation.services.<name>`: how a proposed fix for this service is tested, deployed and
    verified, in the playbook step syntax. Templates may read `params.service` (the service's
    name), `alert.<field>` and `settings.<key>`, as in a playbook."""

    #: The repository (in `remediation.repos`) whose changes this service deploys.
    repo: str = Field(pattern=REPO_PATTERN)
    test: list[TestStep] = Field(default_factory=list)
    deploy: list[DeployStep] = Field(min_length=1)
    verify: ServiceVerify = Field(default_factory=ServiceVerify)
    #: Circuit breaker of proposal runs for this service (approved runs count too).
    max_runs: int = Field(default=5, ge=1, le=100)
    window: Duration = 3600.0

    @model_validator(mode="after")
    def _templates(self) -> ServiceDefaults:
        """Every template checked now, against a stand-in fix, so a typo fails at start-up."""
        spec = _spec(
            self,
            name="proposed-revert",
            fix={"git_revert": {"commit": "0" * 40}},
            alertname="Alert",
            service_label="service",
            description="check",
        )
        problems, _ = check_playbook(spec)
        if problems:
            raise invalid("; ".join(f"{loc_str(loc)}: {message}" for loc, message in problems))
        return self


class ProposalRefused(Exception):
    """The proposal cannot become a plan; `reasons` say why, for the ticket."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class ProposalTarget:
    """The incident a proposal is planned for: its service (and the label naming it) and its alert."""

    incident_id: str
    service: str
    service_label: str
    alertname: str
    fingerprint: str
    status: str
    starts_at: datetime

    @classmethod
    def of(cls, incident_id: str, service: str, service_label: str, alert: TrackedAlert) -> ProposalTarget:
        """The target of an incident's proposal for its `alert` (as the workflow tracks it)."""
        return cls(
            incident_id=incident_id,
            service=service,
            service_label=service_label,
            alertname=alert.labels.get("alertname", ""),
            fingerprint=alert.fingerprint,
            status=alert.status,
            starts_at=alert.startsAt,
        )


@dataclass(frozen=True)
class Runnable:
    """What of a proposed fix can run: a revert of `sha`, or a patch, in `repo`."""

    kind: ProposalKind
    repo: str
    sha: str = ""
    patch: str = ""


def runnable(fix: ProposedFix | None) -> Runnable | None:
    """The part of a proposal selfheal can plan, or None (a playbook, a manual step, nothing)."""
    kind = fix.runnable_kind() if fix is not None else None
    if fix is None or kind is None:
        return None
    if kind == "patch":
        return Runnable(kind="patch", repo=fix.repo or "", patch=fix.patch or "")
    assert fix.revert is not None
    return Runnable(kind="revert", repo=fix.revert.repo, sha=fix.revert.sha)


def check_repo(
    fix: Runnable, target: ProposalTarget, *, services: Mapping[str, ServiceDefaults], repos: Collection[str]
) -> ServiceDefaults:
    """The service's defaults, once the proposal's repository is one selfheal may change and the one
    the service deploys from; ProposalRefused otherwise."""
    if fix.repo not in repos:
        raise ProposalRefused(
            [
                f"repository {fix.repo!r} is not configured (remediation.repos:"
                f" {', '.join(sorted(repos)) or 'none'}): selfheal may not change it"
            ]
        )
    defaults = services.get(target.service)
    if defaults is None:
        raise ProposalRefused(
            [
                f"no remediation.services.{target.service or '<service>'} defaults: selfheal does not"
                " know how to test, deploy and verify a fix for this service"
            ]
        )
    if defaults.repo != fix.repo:
        raise ProposalRefused(
            [
                f"the proposal changes repository {fix.repo!r} but service {target.service!r} deploys"
                f" from {defaults.repo!r} (remediation.services.{target.service}.repo)"
            ]
        )
    return defaults


def plan_proposal(
    fix: Runnable,
    target: ProposalTarget,
    defaults: ServiceDefaults,
    *,
    description: str,
    settings_ctx: Mapping[str, str] | None = None,
) -> RemediationPlan:
    """Render the proposal's plan (policy `approve`); ProposalRefused with every problem found."""
    problems = []
    if not re.fullmatch(SERVICE_PATTERN, target.service):
        problems.append(f"service {target.service!r} does not match {SERVICE_PATTERN}")
    if not re.fullmatch(ALERTNAME_PATTERN, target.alertname):
        problems.append(f"alertname {target.alertname!r} does not match {ALERTNAME_PATTERN}")
    if not LABEL_NAME.fullmatch(target.service_label):
        problems.append(f"service label {target.service_label!r} is not a label name")
    if problems:
        raise ProposalRefused(problems)
    if fix.kind == "revert":
        step: dict[str, Any] = {"git_revert": {"commit": fix.sha}}
    else:
        step = {"git_apply": {"patch": fix.patch}}
    try:
        spec = _spec(
            defaults,
            name=f"proposed-{fix.kind}",
            fix=step,
            alertname=target.alertname,
            service_label=target.service_label,
            description=description,
        )
    except ValueError as err:  # pydantic's ValidationError: the fix step itself is refused
        raise ProposalRefused([_first_line(str(err))]) from err
    problems_at, fields = check_playbook(spec)
    if problems_at:
        raise ProposalRefused([f"{loc_str(loc)}: {message}" for loc, message in problems_at])
    playbook = Playbook(
        spec=spec,
        path=Path(f"<proposal of {target.incident_id}>"),
        digest=hashlib.sha256(spec.model_dump_json(by_alias=True).encode()).hexdigest(),
        name_line=0,
        match_line=0,
        repo_line=0,
        alert_fields=fields,
    )
    try:
        return render_plan(
            playbook,
            params={"service": target.service},
            fingerprint=target.fingerprint,
            status=target.status,
            starts_at=target.starts_at,
            incident_id=target.incident_id,
            settings_ctx=settings_ctx,
        )
    except RenderError as err:
        raise ProposalRefused(err.problems) from err


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:500]


def _ms(seconds: float) -> str:
    """A duration string the playbook schema parses back to the same seconds."""
    return f"{round(seconds * 1000)}ms"


def _spec(
    defaults: ServiceDefaults,
    *,
    name: str,
    fix: dict[str, Any],
    alertname: str,
    service_label: str,
    description: str,
) -> PlaybookSpec:
    data: dict[str, Any] = {
        "apiVersion": "selfheal/v1",
        "kind": "Playbook",
        "name": name,
        "description": description,
        "category": "proposal",
        "match": {"alertname": alertname},
        "target": "{{ params.service }}",
        "repo": defaults.repo,
        "params": {"service": {"from": "label", "key": service_label, "pattern": SERVICE_PATTERN}},
        "policy": {
            "mode": "approve",
            "max_runs": defaults.max_runs,
            "window": _ms(defaults.window),
            "cooldown": "0s",
            "require_firing": True,
        },
        "fix": [fix],
        "test": list(defaults.test),
        "deploy": list(defaults.deploy),
        "verify": verify_data(defaults.verify, service_label),
        "rollback": "auto",
    }
    return PlaybookSpec.model_validate(data)


def verify_data(verify: ServiceVerify, service_label: str) -> dict[str, Any]:
    """The service's verify as a playbook's `verify:` (data): its query, or by default "the alert
    is no longer firing" for this service (`ALERTS`, then Alertmanager asked)."""
    if verify.query is None:
        query = (
            f'count(ALERTS{{alertname="{{{{ alert.alertname }}}}",alertstate="firing",'
            f'{service_label}="{{{{ params.service }}}}"}}) or vector(0)'
        )
        condition = "== 0"
    else:
        query, condition = verify.query, verify.condition or ""
    return {
        "query": query,
        "condition": condition,
        "hold_for": _ms(verify.hold_for),
        "timeout": _ms(verify.timeout),
        "alert_resolved": verify.alert_resolved,
    }
