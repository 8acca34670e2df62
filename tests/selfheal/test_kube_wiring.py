"""The `kube:` section from settings to the activities and the CLI: the client is built only when
configured, the activities dispatch kube steps (test steps always as a dry run) and turn refusals
into non-retryable errors, and `selfheal playbooks lint|plan` apply and print them."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner

from activities.remediation import RemediationActivities
from models.plan import KubeAction, KubeWaitAction, PlannedStep
from models.remediation import StepRequest
from selfheal.clients import Clients
from selfheal.playbooks_cli import playbooks_app
from selfheal.settings import ConfigError, Settings, load_settings
from selfheal.worker import remediation_activities
from tests.support.kube import KubeFake, objects

PLAYBOOK = """\
apiVersion: selfheal/v1
kind: Playbook
name: restart-cart
description: Restart cart
match:
  alertname: CartDown
target: cart
params:
  ns: {from: label, key: namespace, pattern: '^[a-z0-9-]+$'}
fix:
  - kube: {verb: rollout_restart, kind: Deployment, namespace: "{{ params.ns }}", name: cart}
deploy:
  - kube_wait: {kind: Deployment, namespace: NAMESPACE, name: cart, timeout: 2m}
"""


@pytest.fixture
def fake() -> Iterator[KubeFake]:
    with KubeFake() as server:
        server.add(objects.deployment("shop", "cart"))
        yield server


def settings_for(tmp_path: Path, fake: KubeFake | None) -> Settings:
    kube = {"kubeconfig": str(fake.kubeconfig(tmp_path)), "namespaces": ["shop"]} if fake else None
    return load_settings(None, env="dev", data_dir=str(tmp_path / "data"), kube=kube)


def activities(settings: Settings) -> RemediationActivities:
    return remediation_activities(None, settings, Clients(settings))  # type: ignore[arg-type]


def request(action: KubeAction | KubeWaitAction, phase: str = "fix") -> StepRequest:
    step = PlannedStep(phase=phase, index=0, description="", action=action)  # type: ignore[arg-type]
    return StepRequest(
        incident_id="inc-1",
        repo=None,
        worktree=None,
        step=step,
        alert_starts_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def restart(namespace: str = "shop") -> KubeAction:
    return KubeAction(verb="rollout_restart", workload="Deployment", namespace=namespace, name="cart")


def test_no_kube_section_no_client_and_kube_steps_are_refused(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None)
    assert Clients(settings).kube() is None
    with pytest.raises(ApplicationError, match="`kube:` settings section is not configured") as err:
        asyncio.run(activities(settings).apply_step(request(restart())))
    assert err.value.non_retryable


def test_a_bad_kubeconfig_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    settings = load_settings(None, env="dev", kube={"kubeconfig": str(tmp_path / "kubeconfig")})
    with pytest.raises(ConfigError, match="settings: kube: kube: cannot load the cluster configuration"):
        Clients(settings).kube()


def test_activities_run_kube_steps(tmp_path: Path, fake: KubeFake) -> None:
    acts = activities(settings_for(tmp_path, fake))
    # A test step is a dry run even if its action says otherwise.
    outcome = asyncio.run(acts.run_test(request(restart(), "test")))
    assert outcome.ok and outcome.detail.startswith("(server-side dry run)") and not outcome.changed
    assert fake.get("Deployment", "shop", "cart")["metadata"]["generation"] == 1  # type: ignore[index]
    outcome = asyncio.run(acts.apply_step(request(restart())))
    assert outcome.ok and outcome.changed
    fake.complete_rollout("Deployment", "shop", "cart")
    waited = asyncio.run(
        acts.deploy_step(
            request(KubeWaitAction(workload="Deployment", namespace="shop", name="cart"), "deploy")
        )
    )
    assert waited.ok and "successfully rolled out" in waited.detail
    with pytest.raises(ApplicationError, match=r"'prod' is not in kube\.namespaces") as err:
        asyncio.run(acts.apply_step(request(restart("prod"))))
    assert err.value.non_retryable and err.value.type == "RemediationRejected"


def test_a_stalled_rollout_is_a_failed_step_not_an_error(tmp_path: Path, fake: KubeFake) -> None:
    acts = activities(settings_for(tmp_path, fake))
    asyncio.run(acts.apply_step(request(restart())))
    fake.stall_rollout("shop", "cart")
    outcome = asyncio.run(
        acts.deploy_step(
            request(KubeWaitAction(workload="Deployment", namespace="shop", name="cart"), "deploy")
        )
    )
    assert not outcome.ok and "exceeded its progress deadline" in outcome.detail


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("SELFHEAL_"):
            monkeypatch.delenv(key)
    config = tmp_path / "selfheal.yaml"
    config.write_text("kube:\n  namespaces: [shop]\n  kubeconfig: /nonexistent\n")
    monkeypatch.setenv("SELFHEAL_CONFIG", str(config))
    return tmp_path


def test_cli_lint_checks_namespaces_and_plan_prints_kube_steps(cli_env: Path) -> None:
    pbs = cli_env / "playbooks"
    pbs.mkdir()
    (pbs / "p.yaml").write_text(PLAYBOOK.replace("NAMESPACE", "payments"))
    result = CliRunner().invoke(playbooks_app, ["lint", str(pbs)])
    assert result.exit_code == 1
    assert "namespace 'payments' is not in kube.namespaces (allowed: shop)" in result.stdout
    (pbs / "p.yaml").write_text(PLAYBOOK.replace("NAMESPACE", "shop"))
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "selfheal",
        "groupKey": "{}:{}",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "CartDown", "namespace": "shop"},
                "annotations": {},
                "startsAt": "2026-01-05T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "abc123",
            }
        ],
    }
    (cli_env / "alert.json").write_text(json.dumps(alert))
    result = CliRunner().invoke(
        playbooks_app, ["plan", str(cli_env / "alert.json"), "--no-library", "--dir", str(pbs)]
    )
    assert result.exit_code == 0, result.output
    assert "[0] kube rollout restart Deployment shop/cart\n" in result.stdout
    assert "[0] wait for Deployment shop/cart to roll out (within 2m)\n" in result.stdout
    assert '"verb": "rollout_restart"' in result.stdout
