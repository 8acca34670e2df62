"""The `kube` and `kube_wait` steps in playbooks: per-verb fields, phases, the namespace allow-list at
load, and rendered names that must be DNS-1123 names whatever a label carried."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.incident import WebhookAlert
from models.plan import KubeAction, KubeWaitAction
from playbooks.loader import PlaybookError, lint_paths, load_playbooks
from playbooks.matcher import PlaybookSet

#: A deliberately loose pattern: the render-time name checks must hold on their own.
KUBE = """\
apiVersion: selfheal/v1
kind: Playbook
name: restart-deployment
description: Restart a crash-looping deployment
match:
  alertname: KubePodCrashLooping
target: "{{ params.ns }}/{{ params.app }}"
params:
  ns: {from: label, key: namespace, pattern: '^.+$'}
  app: {from: label, key: deployment, pattern: '^.+$'}
fix:
  - kube: {verb: rollout_restart, kind: Deployment, namespace: "{{ params.ns }}", name: "{{ params.app }}"}
test:
  - kube: {verb: rollout_restart, kind: Deployment, namespace: "{{ params.ns }}", name: "{{ params.app }}"}
deploy:
  - kube_wait: {kind: Deployment, namespace: "{{ params.ns }}", name: "{{ params.app }}", timeout: 5m}
rollback:
  - kube: {verb: scale, kind: Deployment, namespace: shop, name: cart, replicas: 2, max_replicas: 4}
"""
FIX = KUBE.splitlines(keepends=True)[KUBE.splitlines().index("fix:") + 1]


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def with_fix(step: str) -> str:
    return KUBE.replace(FIX, f"  - {step}\n", 1)


def alert(**labels: str) -> WebhookAlert:
    return WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", **labels},
            "annotations": {},
            "startsAt": "2026-01-05T10:00:00Z",
            "fingerprint": "abc123",
        }
    )


def test_renders_every_phase(tmp_path: Path) -> None:
    assert lint_paths([write(tmp_path, KUBE)]) == []
    result = load_playbooks([tmp_path], include_library=False).match(
        alert(namespace="shop", deployment="cart")
    )
    plan = result.plan
    assert plan is not None, result.reasons
    fix, test, deploy = plan.fix[0].action, plan.test[0].action, plan.deploy[0].action
    assert isinstance(fix, KubeAction) and isinstance(test, KubeAction) and isinstance(deploy, KubeWaitAction)
    assert (fix.verb, fix.workload, fix.namespace, fix.name, fix.dry_run) == (
        "rollout_restart",
        "Deployment",
        "shop",
        "cart",
        False,
    )
    assert test.dry_run, "a kube verb in a test step is always a server-side dry run"
    assert deploy.timeout_seconds == 300
    assert plan.fix[0].description == "kube rollout restart Deployment shop/cart"
    assert plan.test[0].description.endswith("(server-side dry run)")
    assert plan.deploy[0].description == "wait for Deployment shop/cart to roll out (within 5m)"
    assert not isinstance(plan.rollback, str)
    assert plan.rollback[0].description == "kube scale Deployment shop/cart to 2 replicas (at most 4)"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("kube: {verb: reboot, node: n1}", "fix.0.kube.verb: Input should be 'rollout_restart'"),
        ("kube: {verb: rollout_restart, namespace: shop, name: cart}", "verb rollout_restart needs `kind`"),
        ("kube: {verb: cordon, node: n1, namespace: shop}", "`namespace` is not used by verb cordon"),
        (
            "kube: {verb: scale, kind: Deployment, namespace: shop, name: cart, replicas: 3}",
            "verb scale needs `max_replicas`",
        ),
        (
            "kube: {verb: scale, kind: DaemonSet, namespace: shop, name: a, replicas: 3, max_replicas: 5}",
            "a DaemonSet has no replicas",
        ),
        (
            "kube: {verb: scale, kind: Deployment, namespace: shop, name: a, replicas: 9, max_replicas: 5}",
            "replicas: 9 is outside 0..max_replicas (5)",
        ),
        (
            "kube: {verb: scale, kind: Deployment, namespace: shop, name: a, replicas: x, max_replicas: 5}",
            "replicas: a number, or a template",
        ),
        (
            "kube: {verb: resize_pvc, namespace: shop, name: data, scale: 1.5, max_size: 200GB}",
            "max_size '200GB': a size such as 200Gi",
        ),
        (
            "kube: {verb: resize_pvc, namespace: shop, name: data, scale: 0.5, max_size: 200Gi}",
            "greater than 1",
        ),
        (
            "kube: {verb: delete_pod, namespace: Shop_1, name: cart}",
            "namespace 'Shop_1' is not a valid DNS-1123",
        ),
        ("kube: {verb: drain, node: ../etc}", "node '../etc' is not a valid DNS-1123"),
        (
            "kube_wait: {kind: Deployment, namespace: shop, name: cart}",
            "`kube_wait` is not allowed in fix steps",
        ),
    ],
)
def test_schema_errors_name_the_field(tmp_path: Path, step: str, message: str) -> None:
    path = write(tmp_path, with_fix(step))
    errors = lint_paths([path])
    assert any(message in e for e in errors), errors
    assert all(e.startswith(f"{path}:") for e in errors)


def test_a_literal_namespace_outside_the_allow_list_is_a_lint_error(tmp_path: Path) -> None:
    path = write(tmp_path, KUBE)
    line = next(i for i, text in enumerate(KUBE.splitlines(), 1) if "namespace: shop" in text)
    errors = lint_paths([path], kube_namespaces=["payments"])
    assert errors == [
        f"{path}:{line}: namespace: namespace 'shop' is not in kube.namespaces (allowed: payments)"
    ]
    assert lint_paths([path], kube_namespaces=["shop"]) == [], "templated namespaces are checked at run time"
    with pytest.raises(PlaybookError, match=r"not in kube\.namespaces"):
        load_playbooks([tmp_path], include_library=False, kube_namespaces=["payments"])


@pytest.fixture
def loose(tmp_path: Path) -> PlaybookSet:
    write(tmp_path, KUBE)
    return load_playbooks([tmp_path], include_library=False)


@pytest.mark.parametrize(
    "value",
    [
        "shop; kubectl delete ns prod",
        "../../etc/passwd",
        "{{ settings.public_url }}",
        "$(reboot)",
        "Shop",
        "shop ",
        "a" * 254,
        "-shop",
    ],
)
def test_hostile_label_values_never_reach_a_verb(loose: PlaybookSet, value: str) -> None:
    for labels in ({"namespace": value, "deployment": "cart"}, {"namespace": "shop", "deployment": value}):
        result = loose.match(alert(**labels))
        assert result.plan is None
        assert any("is not a valid DNS-1123" in r for r in result.reasons), result.reasons


def test_a_templated_replica_count_must_be_a_bounded_number(tmp_path: Path) -> None:
    text = KUBE.replace(
        "  app: {from: label, key: deployment, pattern: '^.+$'}",
        "  app: {from: label, key: deployment, pattern: '^.+$'}\n"
        "  replicas: {from: label, key: replicas, pattern: '^.+$'}",
    ).replace(
        FIX,
        "  - kube: {verb: scale, kind: Deployment, namespace: shop, name: cart,"
        ' replicas: "{{ params.replicas }}", max_replicas: 8}\n',
    )
    write(tmp_path, text)
    pbs = load_playbooks([tmp_path], include_library=False)
    ok = pbs.match(alert(namespace="shop", deployment="cart", replicas="6"))
    assert ok.plan is not None and isinstance(ok.plan.fix[0].action, KubeAction)
    assert ok.plan.fix[0].action.replicas == 6
    for bad in ("9", "-1", "1e3", "6; rm"):
        result = pbs.match(alert(namespace="shop", deployment="cart", replicas=bad))
        assert result.plan is None and any(
            "not a whole number in 0..max_replicas (8)" in r for r in result.reasons
        )
