"""The kube component's RBAC grants exactly what the kube verbs do: derived from the verb table in
code (`connectors/kube/verbs.py`), whose every entry tests/connectors/kube checks against the calls
the verbs really make. Nothing missing (a verb would fail with 403), nothing extra."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.kube.verbs import CLUSTER_WIDE, Rule, all_rules

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "deploy" / "kubernetes" / "components" / "kube"


def docs() -> dict[tuple[str, str], dict[str, Any]]:
    loaded = [d for d in yaml.safe_load_all((COMPONENT / "rbac.yaml").read_text(encoding="utf-8")) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in loaded}


def granted(role: dict[str, Any]) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_roles_grant_exactly_what_the_verbs_use() -> None:
    objs = docs()
    namespaced = granted(objs[("ClusterRole", "selfheal-kube")])
    cluster = granted(objs[("ClusterRole", "selfheal-kube-nodes")])
    assert cluster == CLUSTER_WIDE, {"missing": CLUSTER_WIDE - cluster, "extra": cluster - CLUSTER_WIDE}
    needed = all_rules() - CLUSTER_WIDE
    assert namespaced == needed, {"missing": needed - namespaced, "extra": namespaced - needed}
    for role in (objs[("ClusterRole", "selfheal-kube")], objs[("ClusterRole", "selfheal-kube-nodes")]):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule


def test_bindings_give_the_roles_to_the_worker_account_only() -> None:
    objs = docs()
    base_sa = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "base" / "serviceaccount.yaml").read_text())
    assert base_sa["automountServiceAccountToken"] is False, "the API pods get no token"
    for kind, name, role in (
        ("ClusterRoleBinding", "selfheal-kube-nodes", "selfheal-kube-nodes"),
        ("RoleBinding", "selfheal-kube", "selfheal-kube"),
    ):
        binding = objs[(kind, name)]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role,
        }
        assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [
            ("ServiceAccount", base_sa["metadata"]["name"])
        ]
    patch = yaml.safe_load((COMPONENT / "worker-token.yaml").read_text())
    assert patch["metadata"]["name"] == "selfheal-worker"
    assert patch["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_the_checks_catch_drift() -> None:
    """The comparison is not vacuous: a role missing a verb, or granting one more, differs."""
    role = docs()[("ClusterRole", "selfheal-kube")]
    rules = granted(role)
    assert rules - {("batch", "jobs", "delete")} != all_rules() - CLUSTER_WIDE
    assert rules | {("", "secrets", "get")} != all_rules() - CLUSTER_WIDE


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
def test_an_overlay_with_the_component_builds(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "selfheal",
                "resources": [os.path.relpath(ROOT / "deploy" / "kubernetes" / "base", overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    built = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    worker = built[("Deployment", "selfheal-worker")]["spec"]["template"]["spec"]
    api = built[("Deployment", "selfheal-api")]["spec"]["template"]["spec"]
    assert worker["automountServiceAccountToken"] is True and "automountServiceAccountToken" not in api
    assert ("ClusterRole", "selfheal-kube") in built and ("RoleBinding", "selfheal-kube") in built
