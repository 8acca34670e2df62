"""The shipped library against the stock rules as shipped: every playbook lints, its sample is built
from its rule's real label set, the sample selects it (diagnose choosing between playbooks of one
alert), and it renders a plan.

Playbooks using `kube`, `kube_wait` or `from: query` skip until the schema supports them
(`tests.support.library`); everything else runs now.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from models.incident import AlertmanagerWebhook, WebhookAlert
from models.plan import CommandAction, GitPushAction, RemediationPlan
from playbooks.condition import parse_condition
from playbooks.loader import LIBRARY_DIR, lint_paths, load_file
from playbooks.matcher import PlaybookSet
from playbooks.schema import parse_matcher
from selfheal.playbooks_cli import playbooks_app
from tests.support.library import (
    LIBRARY_FILES,
    SAMPLES_DIR,
    kube_state_metrics,
    loadable_library,
    needs_full_library,
    needs_syntax_of,
    sample_alert,
    sample_body,
)

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"public_url": "https://selfheal.example"}
WEBHOOK_KEYS = {
    "receiver",
    "status",
    "alerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "version",
    "groupKey",
    "truncatedAlerts",
}
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
KSM = {"job": "kube-state-metrics"}
NODE = {"job": "node-exporter"}


#: What each stock rule's alert carries, as shipped (see each playbook's header for the expression):
#: severities, labels always present, label values fixed by the rule or the kube-prometheus scrape,
#: labels the rule's aggregation removes, and — for aggregated rules — the exact label set.
STOCK: dict[str, dict[str, Any]] = {
    "KubePodCrashLooping": {
        "severity": {"warning"},
        "has": {"namespace", "pod", "container", "uid", "instance"},
        "fixed": {**KSM, "reason": "CrashLoopBackOff"},
    },
    "KubeDeploymentRolloutStuck": {
        "severity": {"warning"},
        "has": {"namespace", "deployment", "reason", "instance"},
        "fixed": {**KSM, "condition": "Progressing", "status": "false"},
    },
    "KubeContainerWaiting": {
        "severity": {"warning"},
        "has": {"namespace", "pod", "container", "reason", "uid", "instance"},
        "fixed": KSM,
    },
    "KubeHpaMaxedOut": {
        "severity": {"warning"},
        "has": {"namespace", "horizontalpodautoscaler"},
        "fixed": KSM,
    },
    "KubePersistentVolumeFillingUp": {
        "severity": {"warning", "critical"},
        "has": {"namespace", "persistentvolumeclaim", "instance"},
        "fixed": {"job": "kubelet", "metrics_path": "/metrics"},
    },
    "KubeQuotaExceeded": {
        "severity": {"warning"},
        "has": {"namespace", "resource", "resourcequota"},
        "absent": {"job", "instance", "type"},
    },
    "KubeJobFailed": {
        "severity": {"warning"},
        "has": {"namespace", "job_name"},
        "fixed": {**KSM, "condition": "true"},
    },
    "NodeFilesystemSpaceFillingUp": {
        "severity": {"warning", "critical"},
        "has": {"instance", "device", "fstype", "mountpoint"},
        "fixed": NODE,
    },
    "NodeSystemdServiceFailed": {
        "severity": {"warning"},
        "has": {"instance", "name"},
        "fixed": {**NODE, "state": "failed"},
    },
    "NodeClockNotSynchronising": {"severity": {"warning"}, "has": {"instance"}, "fixed": NODE},
    "CertManagerCertExpirySoon": {
        "severity": {"warning"},
        "exactly": {"exported_namespace", "namespace", "name"},
    },
    "TargetDown": {"severity": {"warning"}, "exactly": {"job", "namespace", "service"}},
    "KubePodNotReady": {"severity": {"warning"}, "exactly": {"namespace", "pod", "job"}},
    "KubeMemoryOvercommit": {"severity": {"warning"}, "exactly": set()},
    "CPUThrottlingHigh": {
        "severity": {"info"},
        "has": {"namespace", "pod", "container", "instance"},
        "absent": {"job", "id", "metrics_path", "name", "image", "endpoint", "node"},
    },
    "KubeDeploymentReplicasMismatch": {
        "severity": {"warning"},
        "has": {"namespace", "deployment"},
        "fixed": KSM,
    },
    "KubeStatefulSetReplicasMismatch": {
        "severity": {"warning"},
        "has": {"namespace", "statefulset"},
        "fixed": KSM,
    },
}
#: The project's own rules (no mixin alert exists for these).
CUSTOM = {"HighErrorRatio", "DatabaseConnectionPoolExhausted", "FeatureFlagErrorRatioHigh"}
SUGGEST_ONLY = {
    "TargetDown",
    "KubePodNotReady",
    "KubeMemoryOvercommit",
    "CPUThrottlingHigh",
    "KubeDeploymentReplicasMismatch",
    "KubeStatefulSetReplicasMismatch",
}
#: Diagnose answers in each sample's world, for checks that rule out a playbook matched before it.
WORLD: dict[str, dict[str, float]] = {
    # A crash loop that is no OOM: the OOM playbook (tried first) is ruled out by its diagnose check.
    "crashloop-revert-rollout": {"last termination was an OOM kill": 0},
}


def raw(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def header(path: Path) -> str:
    """The comment block above `apiVersion:` (sources, labels, why the mode)."""
    return path.read_text(encoding="utf-8").split("\napiVersion:", 1)[0]


def holds(condition: str, value: float) -> bool:
    return parse_condition(condition).holds(value)


def test_library_covers_the_stock_alerts() -> None:
    assert {p.stem for p in SAMPLES_DIR.glob("*.json")} == {p.stem for p in LIBRARY_FILES}
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for path in LIBRARY_FILES:
        data = raw(path)
        assert data["name"] == path.stem
        by_alert.setdefault(data["match"]["alertname"], []).append(data)
    assert set(by_alert) == set(STOCK) | CUSTOM
    for alertname in SUGGEST_ONLY:
        assert {d["policy"]["mode"] for d in by_alert[alertname]} == {"suggest"}, alertname
    fixing = set(STOCK) - SUGGEST_ONLY
    for alertname in fixing:
        assert {d["policy"]["mode"] for d in by_alert[alertname]} <= {"auto", "approve"}, alertname
    # One alert, two sub-patterns told apart by diagnose: the OOM first, then the bad rollout.
    crashloop = sorted(by_alert["KubePodCrashLooping"], key=lambda d: -d["match"]["priority"])
    assert [d["name"] for d in crashloop] == ["oom-raise-memory-limit", "crashloop-revert-rollout"]


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_header_cites_the_rule_and_says_why_the_mode(path: Path) -> None:
    data, text = raw(path), header(path)
    alertname = data["match"]["alertname"]
    assert alertname in text
    if alertname in STOCK:
        assert "Rule as shipped" in text and "Runbook: https://" in text
    mode = data["policy"]["mode"]
    assert f"Mode {mode}:" in text, f"the header must say why mode {mode}"


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_sample_is_a_stock_shaped_webhook(path: Path) -> None:
    body = sample_body(path.stem)
    assert set(body) == WEBHOOK_KEYS and body["version"] == "4"
    assert all(set(a) == ALERT_KEYS for a in body["alerts"])
    webhook = AlertmanagerWebhook.model_validate(body)
    alertname = raw(path)["match"]["alertname"]
    for alert in webhook.alerts:
        labels = alert.labels
        assert labels["alertname"] == alertname
        assert all(labels[k] == v for k, v in body["groupLabels"].items())
        rule = STOCK.get(alertname)
        if rule is None:
            continue
        assert labels["severity"] in rule["severity"]
        rest = set(labels) - {"alertname", "severity"}
        if "exactly" in rule:
            assert rest == rule["exactly"], rest
        assert rule.get("has", set()) <= rest
        assert not rule.get("absent", set()) & rest
        assert all(labels.get(k) == v for k, v in rule.get("fixed", {}).items()), labels
        if labels.get("job") == "node-exporter":  # kube-prometheus relabels instance to the node name
            assert ":" not in labels["instance"]


def candidates(library: PlaybookSet, alert: WebhookAlert) -> list[tuple[str, RemediationPlan]]:
    """Every playbook that applies to the alert on its own, in precedence order, with its plan
    (`from: query` params resolved as the worker would, against kube-state-metrics' answer)."""
    found = []
    for playbook in library.playbooks:  # sorted by precedence
        single = PlaybookSet([playbook])
        result = single.match(alert, incident_id="inc-42", settings_ctx=SETTINGS)
        plan = result.plan
        if plan is None and result.playbook is not None and result.deferred:
            plan, problems = single.resolve(
                result.candidates()[0],
                alert,
                kube_state_metrics(alert),
                incident_id="inc-42",
                settings_ctx=SETTINGS,
            )
            assert plan is not None, problems
        if plan is not None:
            found.append((playbook.name, plan))
    return found


def chosen_by_diagnose(
    found: list[tuple[str, RemediationPlan]], world: dict[str, float]
) -> tuple[str, RemediationPlan]:
    """The first candidate no diagnose check rules out; every earlier one must be ruled out by `world`."""
    for name, plan in found:
        failing = [c.name for c in plan.diagnose if c.name in world and not holds(c.condition, world[c.name])]
        if not failing:
            return name, plan
    raise AssertionError(f"every candidate is ruled out: {[n for n, _ in found]}")


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p.stem, marks=needs_syntax_of(p)) for p in LIBRARY_FILES]
)
def test_playbook_lints_and_its_sample_selects_it_and_plans(path: Path) -> None:
    assert lint_paths([path]) == []
    playbook, _ = load_file(path)
    assert playbook is not None and playbook.name == path.stem
    library = loadable_library()
    assert playbook.name in library.by_name

    webhook = AlertmanagerWebhook.model_validate(sample_body(path.stem))
    for alert in webhook.alerts:
        found = candidates(library, alert)
        assert path.stem in [name for name, _ in found], library.match(alert).reasons
        name, plan = chosen_by_diagnose(found, WORLD.get(path.stem, {}))
        assert name == path.stem
        # What the matcher itself picks is the first candidate: diagnose decides the rest.
        assert library.match(alert, incident_id="inc-42", settings_ctx=SETTINGS).playbook == found[0][0]
        assert plan.incident_id == "inc-42" and plan.alert_fingerprint == alert.fingerprint
        assert plan.playbook_digest == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert plan.alert_starts_at == alert.startsAt
        assert plan.fix and plan.verify is not None and plan.rollback == "auto"
        assert all(plan.params.values())
        assert all(isinstance(s.action, CommandAction) and s.action.sandbox for s in plan.test)
        if plan.repo and plan.policy.mode != "suggest":  # GitOps playbooks ship the fix by pushing it
            assert any(isinstance(s.action, GitPushAction) for s in plan.deploy)
        # Every diagnose check and the verify query render with the alert's own values.
        queries = [c.query for c in plan.diagnose] + [plan.verify.query]
        assert all("{{" not in q and "}}" not in q for q in queries)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=needs_syntax_of(LIBRARY_DIR / f"{n}.yaml")) for n in ("oom-raise-memory-limit",)],
)
def test_a_crash_loop_is_never_fixed_as_an_oom_without_diagnose(name: str) -> None:
    """Stock KubePodCrashLooping always says CrashLoopBackOff: the OOM playbook matches any crash loop
    and only its diagnose check on the last termination reason (this pod, this container) tells."""
    for sample in ("oom-raise-memory-limit", "crashloop-revert-rollout"):
        alert = sample_alert(sample)
        assert alert.labels["reason"] == "CrashLoopBackOff"
        found = dict(candidates(loadable_library(), alert))
        plan = found[name]
        oom = [c for c in plan.diagnose if "kube_pod_container_status_last_terminated_reason" in c.query]
        assert len(oom) == 1 and oom[0].condition == "== 1"
        for fragment in (
            'reason="OOMKilled"',
            f'pod="{alert.labels["pod"]}"',
            f'container="{alert.labels["container"]}"',
        ):
            assert fragment in oom[0].query
        assert not holds(oom[0].condition, 0)  # no OOM kill → ruled out, the next candidate is tried


def test_matchers_only_ask_for_what_the_stock_rule_has() -> None:
    """No matcher asks for a label the stock rule never has (as reason="OOMKilled" did), or refuses a
    value the rule fixes."""
    for path in LIBRARY_FILES:
        data = raw(path)
        rule = STOCK.get(data["match"]["alertname"])
        if rule is None:
            continue
        labels = {"alertname": data["match"]["alertname"], **rule.get("fixed", {})}
        for text in data["match"].get("matchers", []):
            matcher = parse_matcher(text)
            if matcher.name in rule.get("fixed", {}):
                assert matcher.matches(labels), (path.stem, text)
            else:
                assert matcher.name in rule.get("has", set()) | rule.get("exactly", set()), (path.stem, text)


@needs_full_library
def test_library_has_no_ties_or_duplicates() -> None:
    assert lint_paths([LIBRARY_DIR]) == []


@needs_full_library
def test_cli_lint_library() -> None:
    result = CliRunner().invoke(playbooks_app, ["lint", str(LIBRARY_DIR)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{len(LIBRARY_FILES)} playbooks OK"


@needs_full_library
def test_selfheal_playbooks_lint_subprocess() -> None:
    """The real entry point; needs `app.add_typer(playbooks_app, name="playbooks")` in selfheal.cli."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal", "playbooks", "lint", "playbooks/library"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip() == f"{len(LIBRARY_FILES)} playbooks OK"
