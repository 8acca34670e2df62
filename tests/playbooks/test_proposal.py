"""An investigation's proposal as a plan (playbooks/proposal.py): the revert or patch, then the
service's test/deploy/verify, through the playbook checks; every refusal says why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from models.investigation import ProposedFix, RevertRef
from models.plan import GitApplyAction, GitRevertAction, plan_digest
from playbooks.loader import lint_paths
from playbooks.patch import PatchError, patch_files
from playbooks.proposal import (
    ProposalRefused,
    ProposalTarget,
    Runnable,
    ServiceDefaults,
    check_repo,
    plan_proposal,
    runnable,
)
from playbooks.render import patch_problems
from selfheal.settings import ConfigError, load_settings

SHA = "eed9490" + "a" * 33
TARGET = ProposalTarget(
    incident_id="4158e0d3b8c8-udt89r",
    service="shop",
    service_label="service",
    alertname="HighLatency",
    fingerprint="f00d",
    status="firing",
    starts_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
)
SHOP: dict[str, Any] = {
    "repo": "config",
    "test": [
        {"command": {"argv": ["python3", "bin/check-config", "{{ params.service }}"], "timeout": "30s"}}
    ],
    "deploy": [
        {"git_push": {"branch": "main"}},
        {"name": "reload {{ params.service }}", "http": {"url": "{{ settings.shop_url }}/-/reload"}},
    ],
    "verify": {"hold_for": "3s", "timeout": "1m"},
}
PATCH = """\
diff --git a/services/shop/config/app.yaml b/services/shop/config/app.yaml
index 3b18e51..a3c2f1e 100644
--- a/services/shop/config/app.yaml
+++ b/services/shop/config/app.yaml
@@ -1,3 +1,2 @@
 products:
---- a line that looks like a header
-  page_size: 2000
+  page_size: 20
"""


def defaults(**changes: Any) -> ServiceDefaults:
    return ServiceDefaults.model_validate({**SHOP, **changes})


def revert() -> Runnable:
    fix = runnable(ProposedFix(kind="manual", revert=RevertRef(repo="config", sha=SHA)))
    assert fix is not None
    return fix


def test_a_revert_becomes_an_approve_plan_with_the_service_defaults() -> None:
    shop = check_repo(revert(), TARGET, services={"shop": defaults()}, repos=["config"])
    plan = plan_proposal(
        revert(),
        TARGET,
        shop,
        description="Revert config@eed9490 (x).",
        settings_ctx={"shop_url": "http://s"},
    )
    assert (plan.playbook, plan.policy.mode, plan.target, plan.repo) == (
        "proposed-revert",
        "approve",
        "shop",
        "config",
    )
    assert plan.fix[0].action == GitRevertAction(commit=SHA)
    assert [s.description for s in [*plan.fix, *plan.test, *plan.deploy]] == [
        f"revert commit {SHA[:12]}",
        "run python3 bin/check-config shop (sandboxed)",
        "push to origin/main",
        "reload shop",
    ]
    assert plan.verify is not None
    assert plan.verify.query == (
        'count(ALERTS{alertname="HighLatency",alertstate="firing",service="shop"}) or vector(0)'
    )
    assert (plan.verify.condition, plan.verify.hold_for_seconds, plan.verify.alert_resolved) == (
        "== 0",
        3,
        True,
    )
    assert plan.policy.cooldown_seconds == 0 and plan.rollback == "auto"
    # The same proposal plans the same: the digest an approval pins is stable.
    again = plan_proposal(
        revert(),
        TARGET,
        shop,
        description="Revert config@eed9490 (x).",
        settings_ctx={"shop_url": "http://s"},
    )
    assert plan_digest(again) == plan_digest(plan)
    assert plan_digest(again.model_copy(update={"target": "other"})) != plan_digest(plan)


def test_a_configured_verify_query_replaces_the_alert_check() -> None:
    shop = defaults(verify={"query": 'rate(errors{service="{{ params.service }}"}[1m])', "condition": "<0.1"})
    plan = plan_proposal(revert(), TARGET, shop, description="d", settings_ctx={"shop_url": "http://s"})
    assert plan.verify is not None
    assert (plan.verify.query, plan.verify.condition) == ('rate(errors{service="shop"}[1m])', "< 0.1")


def test_a_patch_becomes_a_plan_and_its_files_are_listed() -> None:
    fix = runnable(ProposedFix(kind="patch", repo="config", patch=PATCH))
    assert fix is not None and fix.kind == "patch"
    assert patch_files(PATCH) == ["services/shop/config/app.yaml"]
    plan = plan_proposal(fix, TARGET, defaults(), description="d", settings_ctx={"shop_url": "http://s"})
    assert plan.playbook == "proposed-patch"
    assert plan.fix[0].action == GitApplyAction(patch=PATCH)
    assert plan.fix[0].description == "apply a patch to services/shop/config/app.yaml"


def test_only_a_revert_or_a_patch_with_its_repository_can_run() -> None:
    assert runnable(None) is None
    assert runnable(ProposedFix(kind="manual", rationale="restart the pods")) is None
    assert runnable(ProposedFix(kind="patch", patch=PATCH)) is None  # which repository?
    assert runnable(ProposedFix(kind="playbook", playbook="p")) is None


@pytest.mark.parametrize(
    ("services", "repos", "message"),
    [
        ({"shop": SHOP}, ["app"], "repository 'config' is not configured (remediation.repos: app)"),
        ({}, ["config"], "no remediation.services.shop defaults"),
        ({"shop": {**SHOP, "repo": "app"}}, ["config", "app"], "deploys from 'app'"),
    ],
)
def test_a_proposal_outside_what_selfheal_may_change_is_refused(
    services: dict[str, Any], repos: list[str], message: str
) -> None:
    parsed = {name: ServiceDefaults.model_validate(d) for name, d in services.items()}
    with pytest.raises(ProposalRefused) as err:
        check_repo(revert(), TARGET, services=parsed, repos=repos)
    assert message in err.value.reasons[0]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("service", 'shop"}) or vector(1', "service 'shop\"}) or vector(1' does not match"),
        ("service", "{{ settings.x }}", "does not match"),
        ("alertname", 'High"Latency', "alertname 'High\"Latency' does not match"),
        ("service_label", "0bad", "service label '0bad' is not a label name"),
    ],
)
def test_hostile_alert_values_never_reach_a_template(field: str, value: str, message: str) -> None:
    target = ProposalTarget(**{**TARGET.__dict__, field: value})
    with pytest.raises(ProposalRefused) as err:
        plan_proposal(revert(), target, defaults(), description="d")
    assert message in " ".join(err.value.reasons)


def hunk(old: str, new: str) -> str:
    return f"--- a/{old}\n+++ b/{new}\n@@ -1 +1 @@\n-a\n+b\n"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (hunk("../etc/passwd", "../etc/passwd"), "'../etc/passwd' has a '..' component"),
        ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "lacks the 'a/' prefix"),
        ("--- a/x\n+++ b//etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "'/etc/passwd' must be relative"),
        (hunk(".git/hooks/post-checkout", ".git/hooks/post-checkout"), "points into .git"),
        (hunk("a/./b", "a/./b"), "is not normalised"),
        ("diff --git a/x b/../y\nrename from x\nrename to ../y\n", "'../y' has a '..' component"),
        (
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc\n",
            "120000",
        ),
        ("diff --git a/x b/x\nGIT binary patch\nliteral 0\n", "binary patches"),
        ('--- "a/x y"\n+++ "b/x y"\n@@ -1 +1 @@\n-a\n+b\n', "quoted path"),
        ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n", "ends inside a hunk"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n-c\n+b\n", "longer than its header"),
        ("rm -rf /\n", "not a unified diff"),
    ],
)
def test_a_patch_leaving_the_repository_or_hiding_what_it_touches_is_refused(
    patch: str, message: str
) -> None:
    problems = patch_problems(patch)
    assert problems and message in " ".join(problems), problems
    fix = Runnable(kind="patch", repo="config", patch=patch)
    with pytest.raises(ProposalRefused) as err:
        plan_proposal(fix, TARGET, defaults(), description="d")
    assert message in " ".join(err.value.reasons)


def test_a_patch_may_not_be_empty() -> None:
    with pytest.raises(PatchError, match="no file header"):
        patch_files("")


def test_service_defaults_are_validated_at_load_with_the_field_named(tmp_path: Path) -> None:
    repos = {"config": {"path": str(tmp_path)}}

    def load(services: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as err:
            load_settings(None, env="dev", remediation={"repos": repos, "services": services})
        return str(err.value)

    assert "services.shop.repo: 'app' is not in remediation.repos (config)" in load(
        {"shop": {**SHOP, "repo": "app"}}
    )
    assert "remediation.services.shop.deploy" in load({"shop": {**SHOP, "deploy": []}})
    bad_template = {**SHOP, "test": [{"command": {"argv": ["check", "{{ params.nope }}"]}}]}
    assert "test.0.command.argv.1: params.nope is not a declared param (declared: service)" in load(
        {"shop": bad_template}
    )
    assert "`git_edit` is not allowed in deploy steps" in load(
        {"shop": {**SHOP, "deploy": [{"git_edit": {"file": "a", "key": "b", "value": 1}}]}}
    )
    assert "query and condition go together" in load({"shop": {**SHOP, "verify": {"query": "up"}}})
    assert "timeout: shorter than hold_for" in load(
        {"shop": {**SHOP, "verify": {"hold_for": "5m", "timeout": "1m"}}}
    )
    assert "'sh op' is not a service name" in load({"sh op": SHOP})
    good = load_settings(None, env="dev", remediation={"repos": repos, "services": {"shop": SHOP}})
    assert good.remediation.services["shop"].verify.hold_for == 3


def test_a_playbook_may_revert_one_commit_or_apply_a_literal_patch(tmp_path: Path) -> None:
    base = f"""\
apiVersion: selfheal/v1
kind: Playbook
name: known-bad-commit
description: A known bad commit, reverted
match: {{alertname: HighLatency}}
target: shop
repo: config
fix:
  - git_revert: {{commit: {SHA}}}
  - git_apply:
      patch: |
{"".join("        " + line + chr(10) for line in PATCH.splitlines())}"""
    path = tmp_path / "p.yaml"
    path.write_text(base)
    assert lint_paths([path]) == []
    path.write_text(base.replace(f"commit: {SHA}", f"commit: {SHA}, since: 5m"))
    assert any("set either commit, or since and paths" in e for e in lint_paths([path]))
    path.write_text(base.replace(f"commit: {SHA}", "commit: HEAD~1"))
    assert any("'HEAD~1' is not a commit id" in e for e in lint_paths([path]))
    path.write_text(base.replace("a/services/shop", "a/../services/shop"))
    assert any("has a '..' component" in e for e in lint_paths([path]))
