"""The shipped library's fixes, executed for real: each sample alert's rendered plan is run through
the remediation activities' own code (worktree → fix steps → commit → push, and the automatic
rollback) against a real git remote, a local HTTP server, or stub executables on PATH.

Each test proves that the fix does what the playbook's description says, not just that it renders.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities.remediation import RemediationActivities
from models.incident import WebhookAlert
from models.plan import CommandAction, GitEditAction, GitRevertAction, HttpAction, RemediationPlan
from models.remediation import CommitRequest, RollbackRequest, StepRequest, WorktreeRequest
from playbooks.loader import LIBRARY_DIR
from playbooks.matcher import PlaybookSet
from selfheal.clients import Clients
from selfheal.settings import Settings, load_settings
from selfheal.worker import remediation_activities as wire_remediation
from tests.support.library import kube_state_metrics, loadable_library, needs_syntax_of, sample_alert

pytestmark = pytest.mark.timeout(60)

INCIDENT = "inc-42"
#: What the match activity passes (activities/remediation.py: match_playbook).
SETTINGS_CTX = {"public_url": "https://selfheal.example"}


#: The OOM playbook finds its Deployment with a `from: query` param: these tests wait for the schema.
needs_oom_syntax = needs_syntax_of(LIBRARY_DIR / "oom-raise-memory-limit.yaml")


@pytest.fixture(scope="module")
def library() -> PlaybookSet:
    return loadable_library()


def render(
    library: PlaybookSet, name: str, settings_ctx: dict[str, str] | None = None, **labels: str
) -> RemediationPlan:
    alert = sample_alert(name, **labels)
    ctx = settings_ctx or SETTINGS_CTX
    result = library.match(alert, incident_id=INCIDENT, settings_ctx=ctx)
    assert result.playbook == name, result.reasons
    if result.plan is None and result.deferred:  # `from: query` params, as the worker resolves them
        plan, problems = library.resolve(
            result.candidates()[0], alert, kube_state_metrics(alert), incident_id=INCIDENT, settings_ctx=ctx
        )
        assert plan is not None, problems
        return plan
    assert result.plan is not None, result.reasons
    return result.plan


# ------------------------------------------------------------------------------------------ git


def git(cwd: Path, *args: str, when: datetime | None = None) -> str:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    if when is not None:
        stamp = f"@{int(when.timestamp())} +0000"
        env |= {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class GitOps:
    """A bare remote (what is deployed), a seed clone humans commit with, and selfheal's clone."""

    root: Path
    repo_name: str
    remote: Path = field(init=False)
    seed: Path = field(init=False)
    clone: Path = field(init=False)

    def __post_init__(self) -> None:
        self.remote = self.root / "remote.git"
        self.seed = self.root / "seed"
        self.clone = self.root / "selfheal-clone"
        git(self.root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        git(self.root, "init", "-q", "-b", "main", str(self.seed))
        git(self.seed, "remote", "add", "origin", str(self.remote))

    def commit(self, files: dict[str, str], message: str, when: datetime) -> str:
        for name, content in files.items():
            path = self.seed / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git(self.seed, "add", "--all")
        git(self.seed, "commit", "-q", "-m", message, when=when)
        return git(self.seed, "rev-parse", "HEAD")

    def publish(self) -> None:
        """Push the seeded history and clone it for selfheal (as an operator would set it up)."""
        git(self.seed, "push", "-q", "origin", "main:main")
        git(self.root, "clone", "-q", "-b", "main", str(self.remote), str(self.clone))

    def deployed(self, path: str) -> str:
        return git(self.root, "--git-dir", str(self.remote), "show", f"main:{path}") + "\n"

    def deployed_log(self) -> list[str]:
        return git(self.root, "--git-dir", str(self.remote), "log", "--format=%s", "main").splitlines()

    def settings(self) -> Settings:
        return load_settings(
            None,
            env="dev",
            data_dir=str(self.root / "data"),
            remediation={"include_library": True, "repos": {self.repo_name: {"path": str(self.clone)}}},
        )


def step_request(plan: RemediationPlan, step: Any, worktree: str | None) -> StepRequest:
    assert plan.alert_starts_at is not None
    return StepRequest(
        incident_id=INCIDENT,
        repo=plan.repo,
        worktree=worktree,
        step=step,
        alert_starts_at=plan.alert_starts_at,
    )


def remediation_activities(settings: Settings) -> RemediationActivities:
    """The remediation activities as the worker wires them; no Temporal client is needed here."""
    return wire_remediation(None, settings, Clients(settings))  # type: ignore[arg-type]


def run_gitops_fix(plan: RemediationPlan, settings: Settings) -> tuple[list[str], str]:
    """What RemediationWorkflow does for a repo playbook up to verify: worktree, fix steps, commit, deploy.

    Returns the fix steps' details and the fix commit.
    """
    assert plan.repo
    acts = remediation_activities(settings)
    info = asyncio.run(acts.prepare_worktree(WorktreeRequest(incident_id=INCIDENT, repo=plan.repo)))
    assert info.fix_commit is None
    details = []
    for step in plan.fix:
        outcome = asyncio.run(acts.apply_step(step_request(plan, step, info.path)))
        assert outcome.ok, outcome.detail
        details.append(outcome.detail)
    message = f"selfheal: {plan.playbook} for {plan.target}\n\n{plan.description}"
    sha = asyncio.run(
        acts.commit_fix(
            CommitRequest(incident_id=INCIDENT, repo=plan.repo, worktree=info.path, message=message)
        )
    )
    # The push deploys; a `kube_wait` after it needs a cluster (the kube verbs' own tests cover it).
    assert plan.deploy[0].action.kind == "git_push"
    for step in [s for s in plan.deploy if s.action.kind == "git_push"]:
        outcome = asyncio.run(acts.deploy_step(step_request(plan, step, info.path)))
        assert outcome.ok and outcome.changed, outcome.detail
    return details, sha


def run_rollback(plan: RemediationPlan, settings: Settings) -> str:
    """The automatic rollback (`rollback: auto`): revert the fix commit and push it the same way."""
    assert plan.repo and plan.rollback == "auto"
    acts = remediation_activities(settings)
    worktree = str(settings.worktrees_dir / INCIDENT)
    req = RollbackRequest(incident_id=INCIDENT, repo=plan.repo, worktree=worktree, deploy=plan.deploy)
    return asyncio.run(acts.rollback_fix(req))


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old, new) for each differing line; the edits keep everything else byte for byte."""
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), after
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def edit_action(plan: RemediationPlan) -> GitEditAction:
    assert len(plan.fix) == 1
    action = plan.fix[0].action
    assert isinstance(action, GitEditAction)
    return action


LONG_AGO = datetime.fromisoformat("2025-11-01T09:00:00+00:00")

DEPLOYMENT = """\
# cart: owned by team-shop
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels: {{app: cart}}
  template:
    metadata:
      labels: {{app: cart}}
    spec:
      containers:
        - name: cart
          image: registry.example/cart:1.42.0
          resources:
            requests:
              cpu: 250m
              memory: 256Mi
            limits:
              cpu: "1"
              memory: {memory}  # raised after the March OOMs
"""


@pytest.mark.parametrize(
    ("before", "after"),
    [("512Mi", "768Mi"), ("2000Mi", "3000Mi"), ("3000Mi", "4096Mi")],
    ids=["x1.5", "x1.5-large", "capped"],
)
@needs_oom_syntax
def test_oom_raise_memory_limit(library: PlaybookSet, tmp_path: Path, before: str, after: str) -> None:
    plan = render(library, "oom-raise-memory-limit")
    action = edit_action(plan)
    assert (action.file, action.key) == (
        "apps/shop/cart/deployment.yaml",
        "spec.template.spec.containers.name=cart.resources.limits.memory",
    )
    repo = GitOps(tmp_path, "gitops")
    manifest = DEPLOYMENT.format(memory=before)
    repo.commit(
        {action.file: manifest, "apps/shop/cart/kustomization.yaml": "resources: [deployment.yaml]\n"},
        "cart",
        LONG_AGO,
    )
    repo.publish()
    settings = repo.settings()

    details, _ = run_gitops_fix(plan, settings)
    deployed = repo.deployed(action.file)
    assert changed_lines(manifest, deployed) == [
        (
            f"              memory: {before}  # raised after the March OOMs",
            f"              memory: {after}  # raised after the March OOMs",
        ),
    ]
    doc = yaml.safe_load(deployed)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "cart" and container["resources"]["limits"]["memory"] == after
    assert container["resources"]["requests"]["memory"] == "256Mi"  # only the limit moves
    assert details == [f"{action.file}: {action.key} {before!r} → {after!r}"]
    assert repo.deployed_log()[0] == "selfheal: oom-raise-memory-limit for shop/cart"

    run_rollback(plan, settings)
    assert repo.deployed(action.file) == manifest


@needs_oom_syntax
def test_oom_raise_memory_limit_refuses_at_the_cap(library: PlaybookSet, tmp_path: Path) -> None:
    plan = render(library, "oom-raise-memory-limit")
    action = edit_action(plan)
    repo = GitOps(tmp_path, "gitops")
    repo.commit({action.file: DEPLOYMENT.format(memory="4096Mi")}, "cart", LONG_AGO)
    repo.publish()
    with pytest.raises(ApplicationError, match="already at or beyond max_value 4096"):
        run_gitops_fix(plan, repo.settings())
    assert repo.deployed_log() == ["cart"]  # nothing deployed


@needs_oom_syntax
def test_oom_raise_memory_limit_cap_holds_for_gi_limits(library: PlaybookSet, tmp_path: Path) -> None:
    plan = render(library, "oom-raise-memory-limit")
    action = edit_action(plan)
    repo = GitOps(tmp_path, "gitops")
    repo.commit({action.file: DEPLOYMENT.format(memory="3Gi")}, "cart", LONG_AGO)
    repo.publish()
    try:
        run_gitops_fix(plan, repo.settings())
    except ApplicationError:
        return  # refusing a unit it cannot cap would be acceptable too
    memory = yaml.safe_load(repo.deployed(action.file))["spec"]["template"]["spec"]["containers"][0]
    value = memory["resources"]["limits"]["memory"]
    mebibytes = int(value[:-2]) * (1024 if value.endswith("Gi") else 1)
    assert mebibytes <= 4096, value


@needs_oom_syntax
def test_oom_raise_memory_limit_edits_the_alerting_container(library: PlaybookSet, tmp_path: Path) -> None:
    plan = render(library, "oom-raise-memory-limit")
    action = edit_action(plan)
    sidecar = (
        "        - name: log-shipper\n          image: fluent-bit:3\n"
        "          resources: {limits: {memory: 64Mi}}\n"
    )
    manifest = DEPLOYMENT.format(memory="512Mi").replace(
        "      containers:\n", "      containers:\n" + sidecar
    )
    repo = GitOps(tmp_path, "gitops")
    repo.commit({action.file: manifest}, "cart", LONG_AGO)
    repo.publish()
    run_gitops_fix(plan, repo.settings())
    containers = yaml.safe_load(repo.deployed(action.file))["spec"]["template"]["spec"]["containers"]
    by_name = {c["name"]: c["resources"]["limits"]["memory"] for c in containers}
    assert by_name == {"log-shipper": "64Mi", "cart": "768Mi"}


HPA = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: search-api
  namespace: search
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: search-api
  minReplicas: 3
  maxReplicas: {max}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
"""


@pytest.mark.parametrize(
    ("before", "after"), [(10, 15), (7, 11), (40, 50)], ids=["x1.5", "round-up", "capped"]
)
def test_hpa_raise_max_replicas(library: PlaybookSet, tmp_path: Path, before: int, after: int) -> None:
    plan = render(library, "hpa-raise-max-replicas")
    action = edit_action(plan)
    assert (action.file, action.key) == ("apps/search/search-api/hpa.yaml", "spec.maxReplicas")
    repo = GitOps(tmp_path, "gitops")
    manifest = HPA.format(max=before)
    repo.commit({action.file: manifest}, "search-api hpa", LONG_AGO)
    repo.publish()
    settings = repo.settings()

    run_gitops_fix(plan, settings)
    deployed = repo.deployed(action.file)
    assert changed_lines(manifest, deployed) == [(f"  maxReplicas: {before}", f"  maxReplicas: {after}")]
    assert yaml.safe_load(deployed)["spec"]["maxReplicas"] == after  # an int, not a string

    run_rollback(plan, settings)
    assert repo.deployed(action.file) == manifest


APPLICATION_YAML = """\
server:
  port: 8080
spring:
  application:
    name: orders
  datasource:
    url: jdbc:postgresql://postgres:5432/orders
    hikari:
      maximum-pool-size: {size}  # per replica; PostgreSQL allows 200 in total
      minimum-idle: 5
      connection-timeout: 30000
"""


@pytest.mark.parametrize(("before", "after"), [(20, 30), (40, 50)], ids=["x1.5", "capped"])
def test_db_pool_raise_size(library: PlaybookSet, tmp_path: Path, before: int, after: int) -> None:
    plan = render(library, "db-pool-raise-size")
    assert plan.policy.mode == "approve"
    action = edit_action(plan)
    assert (action.file, action.key) == (
        "services/orders/config/application.yaml",
        "spring.datasource.hikari.maximum-pool-size",
    )
    repo = GitOps(tmp_path, "config")
    config = APPLICATION_YAML.format(size=before)
    repo.commit({action.file: config}, "orders config", LONG_AGO)
    repo.publish()
    settings = repo.settings()

    run_gitops_fix(plan, settings)
    deployed = repo.deployed(action.file)
    assert changed_lines(config, deployed) == [
        (
            f"      maximum-pool-size: {before}  # per replica; PostgreSQL allows 200 in total",
            f"      maximum-pool-size: {after}  # per replica; PostgreSQL allows 200 in total",
        ),
    ]
    assert yaml.safe_load(deployed)["spring"]["datasource"]["hikari"]["maximum-pool-size"] == after

    run_rollback(plan, settings)
    assert repo.deployed(action.file) == config


QUOTA = """\
apiVersion: v1
kind: ResourceQuota
metadata:
  name: compute
  namespace: analytics
spec:
  hard:
    requests.cpu: "16"
    requests.memory: {requests}
    limits.memory: 96Gi
"""


@pytest.mark.parametrize(("before", "after"), [("64Gi", "80Gi"), ("240Gi", "256Gi")], ids=["x1.25", "capped"])
def test_quota_raise_memory(library: PlaybookSet, tmp_path: Path, before: str, after: str) -> None:
    plan = render(library, "quota-raise-memory")
    assert plan.policy.mode == "approve"
    action = edit_action(plan)
    # The resource name's dot is escaped, so it is one key, not spec.hard.requests.memory nested.
    assert (action.file, action.key) == ("apps/analytics/quotas/compute.yaml", "spec.hard.requests\\.memory")
    repo = GitOps(tmp_path, "gitops")
    manifest = QUOTA.format(requests=before)
    repo.commit({action.file: manifest}, "analytics quota", LONG_AGO)
    repo.publish()
    settings = repo.settings()

    run_gitops_fix(plan, settings)
    deployed = repo.deployed(action.file)
    assert changed_lines(manifest, deployed) == [
        (f"    requests.memory: {before}", f"    requests.memory: {after}")
    ]
    run_rollback(plan, settings)
    assert repo.deployed(action.file) == manifest


def test_quota_raise_memory_leaves_other_resources_to_humans(library: PlaybookSet) -> None:
    for resource in ("requests.cpu", "pods", "count/deployments.apps", "requests.storage"):
        alert = sample_alert("quota-raise-memory", resource=resource)
        assert library.match(alert, settings_ctx=SETTINGS_CTX).plan is None, resource


FLAGS = """\
# checkout feature flags; selfheal may switch them off
flags:
  new-checkout-flow:
    enabled: true
    rollout: 25
  express-pay:
    enabled: true
"""


def test_feature_flag_disable(library: PlaybookSet, tmp_path: Path) -> None:
    plan = render(library, "feature-flag-disable")
    action = edit_action(plan)
    assert (action.file, action.key, action.value) == (
        "flags/checkout.yaml",
        "flags.new-checkout-flow.enabled",
        False,
    )
    repo = GitOps(tmp_path, "config")
    repo.commit({action.file: FLAGS}, "flags", LONG_AGO)
    repo.publish()
    settings = repo.settings()

    run_gitops_fix(plan, settings)
    deployed = repo.deployed(action.file)
    assert changed_lines(FLAGS, deployed) == [("    enabled: true", "    enabled: false")]
    assert yaml.safe_load(deployed)["flags"] == {
        "new-checkout-flow": {"enabled": False, "rollout": 25},  # a real boolean false
        "express-pay": {"enabled": True},  # the other flag stays on
    }

    run_rollback(plan, settings)
    assert repo.deployed(action.file) == FLAGS


def test_revert_bad_config_deploy(library: PlaybookSet, tmp_path: Path) -> None:
    plan = render(library, "revert-bad-config-deploy")
    assert len(plan.fix) == 1
    action = plan.fix[0].action
    assert isinstance(action, GitRevertAction)
    assert action.paths == ["services/checkout/config/**"] and action.since_seconds == 90 * 60
    starts = plan.alert_starts_at
    assert starts is not None

    cfg = "services/checkout/config/app.yaml"
    limits = "services/checkout/config/limits/rate.yaml"
    other = "services/payments/config/app.yaml"
    repo = GitOps(tmp_path, "config")
    repo.commit(
        {cfg: "timeout: 5s\nretries: 3\n", limits: "rps: 100\n", other: "timeout: 2s\n"}, "initial", LONG_AGO
    )
    # Outside the 90m window: an older checkout change that must stay.
    repo.commit({limits: "rps: 200\n"}, "checkout: raise rate limit", starts - timedelta(minutes=100))
    # Inside the window but another service's config: must stay.
    repo.commit({other: "timeout: 3s\n"}, "payments: longer timeout", starts - timedelta(minutes=40))
    # The bad change, 20 minutes before the alert (also in a nested directory, which ** reaches).
    bad = repo.commit(
        {cfg: "timeout: 50ms\nretries: 0\n", limits: "rps: 200\nburst: 0\n"},
        "checkout: aggressive timeouts",
        starts - timedelta(minutes=20),
    )
    # After the alert started: not the cause, not reverted (and it does not conflict).
    repo.commit({"README.md": "config repo\n"}, "docs", starts + timedelta(minutes=5))
    repo.publish()
    settings = repo.settings()

    details, _ = run_gitops_fix(plan, settings)
    assert details == [f"reverted {bad[:12]}"]
    assert repo.deployed(cfg) == "timeout: 5s\nretries: 3\n"
    assert repo.deployed(limits) == "rps: 200\n"  # the older change is kept
    assert repo.deployed(other) == "timeout: 3s\n"  # the other service's change is kept
    assert repo.deployed("README.md") == "config repo\n"
    assert repo.deployed_log()[:2] == [
        "selfheal: revert-bad-config-deploy for checkout",
        "docs",
    ]

    run_rollback(plan, settings)
    assert repo.deployed(cfg) == "timeout: 50ms\nretries: 0\n"
    assert repo.deployed(limits) == "rps: 200\nburst: 0\n"
    assert repo.deployed(other) == "timeout: 3s\n"


def test_revert_bad_config_deploy_finds_nothing_outside_the_window(
    library: PlaybookSet, tmp_path: Path
) -> None:
    plan = render(library, "revert-bad-config-deploy")
    starts = plan.alert_starts_at
    assert starts is not None
    cfg = "services/checkout/config/app.yaml"
    repo = GitOps(tmp_path, "config")
    repo.commit({cfg: "timeout: 5s\n"}, "initial", LONG_AGO)
    repo.commit({cfg: "timeout: 50ms\n"}, "checkout: too early", starts - timedelta(minutes=91))
    repo.publish()
    with pytest.raises(ApplicationError, match="nothing to revert"):
        run_gitops_fix(plan, repo.settings())
    assert repo.deployed(cfg) == "timeout: 50ms\n"


# -------------------------------------------------------------------------------------- commands


def stub_path(tmp_path: Path, *programs: str) -> tuple[Path, Path]:
    """A PATH directory where each program is a /bin/sh script recording its name and argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    for program in programs:
        stub = bin_dir / program
        # Builtins only (PATH holds nothing else); one NUL-separated record per call.
        stub.write_text(
            f"#!/bin/sh\nprintf '%s\\0' \"${{0##*/}}\" \"$PWD\" \"$@\" >> '{log}'\nprintf '\\n' >> '{log}'\n"
        )
        stub.chmod(0o755)
    return bin_dir, log


def recorded_calls(log: Path) -> list[list[str]]:
    return [line.rstrip("\0").split("\0") for line in log.read_text().split("\0\n") if line]


def run_command_fix(plan: RemediationPlan, settings: Settings) -> list[str]:
    """What RemediationWorkflow does for a playbook without a repo: each fix step as apply_step."""
    assert plan.repo is None
    acts = remediation_activities(settings)
    details = []
    for step in plan.fix:
        outcome = asyncio.run(acts.apply_step(step_request(plan, step, None)))
        assert outcome.ok, outcome.detail
        details.append(outcome.detail)
    return details


def command_settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return load_settings(None, env="dev", data_dir=str(data_dir), remediation={"include_library": True})


NODE = "ip-10-0-3-21.eu-west-1.compute.internal"


def test_node_disk_cleanup(library: PlaybookSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = render(library, "node-disk-cleanup")
    assert plan.params == {"node": NODE, "mountpoint": "/"} and plan.policy.mode == "approve"
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--", NODE]
    expected = [
        [*ssh, "sudo", "-n", "crictl", "rmi", "--prune"],
        [*ssh, "sudo", "-n", "journalctl", "--vacuum-size=1G"],
    ]
    actions = [s.action for s in plan.fix]
    assert all(isinstance(a, CommandAction) and not a.sandbox and not a.env for a in actions)
    assert [a.argv for a in actions if isinstance(a, CommandAction)] == expected

    bin_dir, log = stub_path(tmp_path, "ssh")
    monkeypatch.setenv("PATH", str(bin_dir))  # the only PATH a command inherits: no real ssh runs
    settings = command_settings(tmp_path)
    details = run_command_fix(plan, settings)
    assert all("→ exit 0" in d for d in details), details
    data_dir = str((settings.data_dir / "scratch" / INCIDENT).resolve())  # a repo-less command's own dir
    assert recorded_calls(log) == [["ssh", data_dir, *argv[1:]] for argv in expected]


@pytest.mark.parametrize(
    "instance",
    ["-oProxyCommand=touch%20x", "web-03;reboot", "web 03", "Web-03", "$(id)", "web-03:9100", "../x"],
)
def test_node_disk_cleanup_refuses_hostile_nodes(library: PlaybookSet, instance: str) -> None:
    result = library.match(sample_alert("node-disk-cleanup", instance=instance), settings_ctx=SETTINGS_CTX)
    assert result.plan is None


@pytest.mark.parametrize("mountpoint", ["/var/lib/kubelet", "/boot", "/home"])
def test_node_disk_cleanup_only_for_root_and_var(library: PlaybookSet, mountpoint: str) -> None:
    """Images and the journal live on / or /var; pruning them does not free other filesystems."""
    alert = sample_alert("node-disk-cleanup", mountpoint=mountpoint)
    assert library.match(alert, settings_ctx=SETTINGS_CTX).plan is None


def test_node_systemd_unit_restart(
    library: PlaybookSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = render(library, "node-systemd-unit-restart")
    node = "ip-10-0-3-22.eu-west-1.compute.internal"
    expected = ["systemctl", "--host", node, "restart", "--", "fluent-bit.service"]
    assert len(plan.fix) == 1
    action = plan.fix[0].action
    assert isinstance(action, CommandAction) and action.argv == expected and not action.sandbox

    bin_dir, log = stub_path(tmp_path, "systemctl")
    monkeypatch.setenv("PATH", str(bin_dir))
    settings = command_settings(tmp_path)
    details = run_command_fix(plan, settings)
    assert len(details) == 1 and details[0].startswith(f"{' '.join(expected)} → exit 0 in "), details
    assert recorded_calls(log) == [
        ["systemctl", str((settings.data_dir / "scratch" / INCIDENT).resolve()), *expected[1:]]
    ]


def unit_alert(unit: str) -> WebhookAlert:
    """The sample with another unit (its label is `name`, which `sample_alert` takes as its own)."""
    alert = sample_alert("node-systemd-unit-restart")
    return alert.model_copy(update={"labels": {**alert.labels, "name": unit}})


def test_node_systemd_unit_restart_templated_unit(library: PlaybookSet) -> None:
    plan = library.match(unit_alert("getty@tty1.service"), settings_ctx=SETTINGS_CTX).plan
    assert plan is not None
    action = plan.fix[0].action
    assert isinstance(action, CommandAction) and action.argv[-2:] == ["--", "getty@tty1.service"]


@pytest.mark.parametrize(
    "unit", ["sshd", "x.service;reboot", "--force.service", "a b.service", "../x.service", "x.socket"]
)
def test_node_systemd_unit_restart_refuses_bad_units(library: PlaybookSet, unit: str) -> None:
    assert library.match(unit_alert(unit), settings_ctx=SETTINGS_CTX).plan is None


def test_node_clock_restart_timesync(library: PlaybookSet) -> None:
    node = "ip-10-0-3-23.eu-west-1.compute.internal"
    default = render(library, "node-clock-restart-timesync").fix[0].action
    assert isinstance(default, CommandAction)
    assert default.argv == ["systemctl", "--host", node, "restart", "--", "chronyd.service"]
    ctx = {**SETTINGS_CTX, "time_sync_unit": "systemd-timesyncd.service"}
    chosen = render(library, "node-clock-restart-timesync", settings_ctx=ctx).fix[0].action
    assert isinstance(chosen, CommandAction) and chosen.argv[-1] == "systemd-timesyncd.service"


# ------------------------------------------------------------------------------------------ http


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes


@pytest.fixture
def kube_api() -> Iterator[tuple[str, list[Received]]]:
    """A stand-in for `kubectl proxy`: records each request and answers 200 with the object."""
    seen: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            seen.append(Received(self.command, self.path, headers, body))
            self.send_response(404 if self.path.startswith("/missing/") else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen  # /missing/… answers 404
    finally:
        server.shutdown()
        server.server_close()


def test_cert_renew(library: PlaybookSet, tmp_path: Path, kube_api: tuple[str, list[Received]]) -> None:
    url, seen = kube_api
    # What production renders: the match activity passes only public_url, so it is kubectl proxy's URL.
    default = render(library, "cert-renew").fix[0].action
    assert isinstance(default, HttpAction)
    assert default.url == (
        "http://127.0.0.1:8001/apis/cert-manager.io/v1/namespaces/shop/certificates/shop-example-com-tls"
        "/status?fieldManager=selfheal&force=true"
    )

    plan = render(library, "cert-renew", settings_ctx={**SETTINGS_CTX, "kube_api_url": url})
    assert plan.repo is None and len(plan.fix) == 1
    action = plan.fix[0].action
    assert isinstance(action, HttpAction)
    assert action.url == default.url.replace("http://127.0.0.1:8001", url)
    details = run_command_fix(plan, command_settings(tmp_path))
    assert details == [f"PATCH {action.url} → 200"]

    assert len(seen) == 1
    request = seen[0]
    assert request.method == "PATCH"
    assert request.path == (
        "/apis/cert-manager.io/v1/namespaces/shop/certificates/shop-example-com-tls/status"
        "?fieldManager=selfheal&force=true"
    )
    # Server-side apply: exactly one content type, the apply-patch one (JSON is valid YAML).
    assert request.headers["content-type"] == ["application/apply-patch+yaml"]
    assert json.loads(request.body) == {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "shop-example-com-tls", "namespace": "shop"},
        "status": {
            "conditions": [
                {
                    "type": "Issuing",
                    "status": "True",  # the string Kubernetes requires, not a YAML boolean
                    "reason": "ManuallyTriggered",
                    "message": "Certificate re-issuance triggered by selfheal",
                }
            ]
        },
    }


def test_cert_renew_fails_on_an_unexpected_status(
    library: PlaybookSet, tmp_path: Path, kube_api: tuple[str, list[Received]]
) -> None:
    """A 404 (no such certificate, or no CRD) is not a success the workflow could build on."""
    url, _ = kube_api
    plan = render(library, "cert-renew", settings_ctx={**SETTINGS_CTX, "kube_api_url": url + "/missing"})
    action = plan.fix[0].action
    assert isinstance(action, HttpAction) and action.expect_status == [200, 201]
    with pytest.raises(ApplicationError, match="HTTP 404 \\(expected 200, 201\\)"):
        run_command_fix(plan, command_settings(tmp_path))
