"""A rendered remediation plan: what RemediationWorkflow executes, step by step.

Everything here is already rendered and validated (templates resolved from validated params,
paths checked to stay inside the worktree), so the workflow and activities treat it as data.
The playbook schema (`playbooks/schema.py`) and the renderer produce it; nothing else does.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field

#: The closed list of Kubernetes verbs a playbook may use (`kube:` steps).
KubeVerb = Literal[
    "rollout_restart",
    "scale",
    "delete_pod",
    "evict_pod",
    "cordon",
    "uncordon",
    "drain",
    "resize_pvc",
    "job_from_cronjob",
    "delete_failed_job",
]
KUBE_VERBS: tuple[str, ...] = get_args(KubeVerb)
#: The workload kinds `rollout_restart`, `scale` and `kube_wait` act on.
WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


class GitRevertAction(BaseModel):
    """Revert the commits made in [alert start - since, alert start] that touch `paths` (globs),
    or exactly one `commit` of the base branch (an approved proposal's suspect change)."""

    kind: Literal["git_revert"] = "git_revert"
    since_seconds: float = 0
    paths: list[str] = Field(default_factory=list)
    max_commits: int = 5
    #: A full commit id: revert this one commit, which must be on the base branch and not a merge.
    commit: str | None = None


class GitApplyAction(BaseModel):
    """Apply a unified diff to the worktree (`git apply --index`); its paths were checked to stay
    inside the repository (relative, no `..`, not .git) when the plan was rendered."""

    kind: Literal["git_apply"] = "git_apply"
    patch: str


class GitEditAction(BaseModel):
    """Set (or scale) the value at a dotted key path in a YAML/JSON/TOML/.env file of the repo."""

    kind: Literal["git_edit"] = "git_edit"
    file: str
    key: str
    value: Any = None
    #: Multiply the current numeric value (units such as `512Mi` kept) instead of setting `value`.
    scale: float | None = None
    #: Upper bound for a scaled value: a number in the value's own unit, or a quantity with its
    #: unit (`4096Mi`), compared after converting units (Ki/Mi/Gi/Ti, k/M/G/T, m).
    max_value: float | str | None = None
    format: Literal["auto", "yaml", "json", "toml", "env"] = "auto"


class CommandAction(BaseModel):
    """An argv list (never a shell string), run in the worktree (or `cwd` inside it)."""

    kind: Literal["command"] = "command"
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = "."
    timeout_seconds: float = 60
    #: Run sandboxed (bubblewrap, no network, only the worktree writable) — tests always are.
    sandbox: bool = False


class HttpAction(BaseModel):
    kind: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    json_body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    timeout_seconds: float = 30


class GitPushAction(BaseModel):
    """GitOps deploy: push the fix commit to `branch` of the configured repo's remote."""

    kind: Literal["git_push"] = "git_push"
    branch: str
    remote: str = "origin"


class KubeAction(BaseModel):
    """One verb of the closed list against one object; names are validated DNS-1123 names.

    `dry_run` sends every write with `dryRun=All` (always so in test steps): the API server
    validates and admits it but persists nothing.
    """

    kind: Literal["kube"] = "kube"
    verb: KubeVerb
    #: Deployment, StatefulSet or DaemonSet (rollout_restart, scale).
    workload: WorkloadKind | None = None
    namespace: str | None = None
    #: The object's name: workload, pod, PVC or Job.
    name: str | None = None
    node: str | None = None
    cronjob: str | None = None
    replicas: int | None = None
    max_replicas: int | None = None
    #: resize_pvc: multiply the PVC's requested storage by this, capped at `max_size`.
    scale: float | None = None
    max_size: str | None = None
    dry_run: bool = False
    timeout_seconds: float = 60


class KubeWaitAction(BaseModel):
    """Wait until a workload's rollout is complete (`kubectl rollout status` semantics)."""

    kind: Literal["kube_wait"] = "kube_wait"
    workload: WorkloadKind
    namespace: str
    name: str
    timeout_seconds: float = 600


class PullRequestAction(BaseModel):
    """GitOps deploy through review: push the fix branch (`selfheal/<incident id>`), open (or find)
    its pull/merge request against `base`, and wait durably until it is merged or closed."""

    kind: Literal["pull_request"] = "pull_request"
    #: The remediation repository (`remediation.repos.<name>`) whose forge is in `gitops.forges`.
    repo: str
    #: `auto`: selfheal enables auto-merge (or merges once mergeable); `human`: a person merges.
    merge: Literal["auto", "human"] = "human"
    #: The target branch; None: the repository's `base_branch`.
    base: str | None = None
    labels: list[str] = Field(default_factory=lambda: ["selfheal"])
    #: How long to wait for the merge before escalating (and closing the request).
    timeout_seconds: float = 86400
    #: For `policy.mode: approve`: the human's merge is the approval (no separate decision).
    merge_approves: bool = False


class ArgoTarget(BaseModel):
    app: str


class FluxTarget(BaseModel):
    kind: Literal["Kustomization", "HelmRelease"] = "Kustomization"
    namespace: str
    name: str


class GitopsSyncAction(BaseModel):
    """Have Argo CD or Flux apply the deployed commit, then wait until it runs that commit (or a
    later one containing it) and reports healthy."""

    kind: Literal["gitops_sync"] = "gitops_sync"
    argocd: ArgoTarget | None = None
    flux: FluxTarget | None = None
    timeout_seconds: float = 600


Action = Annotated[
    GitRevertAction
    | GitApplyAction
    | GitEditAction
    | CommandAction
    | HttpAction
    | GitPushAction
    | KubeAction
    | KubeWaitAction
    | PullRequestAction
    | GitopsSyncAction,
    Field(discriminator="kind"),
]


class PlannedStep(BaseModel):
    phase: Literal["fix", "test", "deploy", "rollback"]
    index: int
    description: str
    action: Action


class PlannedCheck(BaseModel):
    """A PromQL check: the query's value(s) must satisfy `condition` (e.g. `> 0.05`)."""

    name: str
    query: str
    condition: str


class PlannedVerify(BaseModel):
    query: str
    condition: str
    hold_for_seconds: float = 60
    timeout_seconds: float = 600
    alert_resolved: bool = False


class PlannedPolicy(BaseModel):
    mode: Literal["auto", "approve", "suggest"]
    max_runs: int
    window_seconds: float
    cooldown_seconds: float
    require_firing: bool = True


class PlannedDiagnostic(BaseModel):
    """What to show humans beside the plan: a PromQL query's values, or an object's recent events."""

    name: str
    query: str | None = None
    #: `kind`, `namespace` ("" for a Node) and `name` of the object whose events to read.
    kube_events: dict[str, str] | None = None


class RemediationPlan(BaseModel):
    """One playbook applied to one alert: the whole fix → test → deploy → verify → rollback path."""

    playbook: str
    playbook_digest: str
    category: str = ""
    description: str = ""
    incident_id: str = ""
    alert_fingerprint: str
    alertname: str
    #: When the alert started: the end of a `git_revert` window (`since_seconds` reaches back from it).
    alert_starts_at: datetime | None = None
    target: str
    repo: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    policy: PlannedPolicy
    diagnose: list[PlannedCheck] = Field(default_factory=list)
    #: Informational: attached to the investigation, never a condition for acting.
    diagnostics: list[PlannedDiagnostic] = Field(default_factory=list)
    fix: list[PlannedStep] = Field(default_factory=list)
    test: list[PlannedStep] = Field(default_factory=list)
    deploy: list[PlannedStep] = Field(default_factory=list)
    verify: PlannedVerify | None = None
    #: "auto": revert the fix commit and redeploy; otherwise explicit steps.
    rollback: Literal["auto"] | list[PlannedStep] = "auto"

    def merge_approves(self) -> bool:
        """An `approve` playbook whose pull request's merge is the approval: it runs at once, up to
        the open pull request, and a person's merge stands for the decision."""
        return self.policy.mode == "approve" and any(
            isinstance(s.action, PullRequestAction) and s.action.merge_approves for s in self.deploy
        )

    def uses_gitops(self) -> bool:
        """Whether its deploy goes through a pull request or a GitOps sync (the durable-wait path)."""
        return any(s.action.kind in ("pull_request", "gitops_sync") for s in self.deploy)


class Candidate(BaseModel):
    """One playbook that matches an alert, in precedence order: diagnose decides whether it runs."""

    playbook: str
    #: The digest of the playbook file it was matched with (a resolution refuses another version).
    digest: str
    mode: str
    #: The params taken from the alert (label, annotation), validated.
    params: dict[str, str] = Field(default_factory=dict)
    #: Params from a PromQL query (`from: query`), resolved at run time; until then `plan` is None.
    deferred: list[str] = Field(default_factory=list)
    plan: RemediationPlan | None = None


class MatchResult(BaseModel):
    """Which playbooks apply to one alert, or why none does.

    The first candidate by precedence is `playbook`/`mode`/`params`/`plan` (plan None while it has
    `deferred` params); the others follow in `alternatives`, tried when its diagnose rules it out.
    """

    fingerprint: str
    alertname: str
    playbook: str | None = None
    mode: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    plan: RemediationPlan | None = None
    digest: str | None = None
    deferred: list[str] = Field(default_factory=list)
    alternatives: list[Candidate] = Field(default_factory=list)

    def candidates(self) -> list[Candidate]:
        """Every matching playbook in precedence order, the first one included."""
        if self.playbook is None:
            return []
        first = Candidate(
            playbook=self.playbook,
            digest=self.digest or (self.plan.playbook_digest if self.plan else ""),
            mode=self.mode or "",
            params=self.params,
            deferred=self.deferred,
            plan=self.plan,
        )
        return [first, *self.alternatives]

    def needs_choice(self) -> bool:
        """Whether diagnose must choose before acting: several candidates, or params to resolve."""
        return bool(self.alternatives or self.deferred)


def plan_digest(plan: RemediationPlan) -> str:
    """sha256 of the plan's canonical JSON (sorted keys, no spaces): what an approval pins, so what
    runs is exactly the plan shown when the approver decided."""
    canonical = json.dumps(plan.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
