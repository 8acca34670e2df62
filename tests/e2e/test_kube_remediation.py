"""A kube playbook through the whole loop: webhook → incident → RemediationWorkflow → the kube
activities → the real `kubernetes` client → the Kubernetes API test server, on a real Temporal.

The fake's controller finishes a rollout after a few reads of the workload, so `kube_wait` passes
without the test sleeping; a stalled rollout fails it fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from connectors.temporal import connect
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.kube import KubeFake, objects
from tests.support.payloads import simple

pytestmark = pytest.mark.timeout(120)


def playbook(namespace: str = "shop") -> str:
    target = {"kind": "Deployment", "namespace": namespace, "name": "{{ params.service }}"}
    doc = {
        "apiVersion": "selfheal/v1",
        "kind": "Playbook",
        "name": "restart-on-errors",
        "description": "Restart the deployment serving errors",
        "match": {"alertname": "HighErrorRate", "matchers": ['service=~".+"']},
        "target": "{{ params.service }}",
        "params": {
            "service": {"from": "label", "key": "service", "pattern": "^[a-z0-9-]{1,63}$"},
            "ns": {"from": "label", "key": "namespace", "pattern": "^[a-z0-9-]{1,63}$", "default": "shop"},
        },
        "policy": {"mode": "auto", "require_firing": False, "cooldown": "0s", "max_runs": 10},
        "fix": [{"kube": {"verb": "rollout_restart", **target}}],
        "test": [{"kube": {"verb": "scale", **target, "replicas": 4, "max_replicas": 5}}],
        "deploy": [{"kube_wait": {**target, "timeout": "1m"}}],
        "rollback": [
            {"kube": {"verb": "scale", **target, "replicas": 2, "max_replicas": 5}},
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class KubeLoop:
    fake: KubeFake
    http: httpx.AsyncClient

    async def run(self, **labels: str) -> dict[str, Any]:
        resp = await self.http.post("/api/v1/alerts", json=simple(**labels))
        assert resp.status_code in (200, 202), resp.text
        incident_id = resp.json()["incident_id"]
        return await wait_for_incident(
            self.http, incident_id, lambda v: v["remediations"] and v["remediations"][-1].get("outcome"), 90
        )

    async def comments(self, view: dict[str, Any]) -> str:
        ticket = (await self.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
        return "\n".join(c["body"] for c in ticket["comments"])


@pytest.fixture
def fake() -> Iterator[KubeFake]:
    with KubeFake() as server:
        server.add(objects.deployment("shop", "checkout", replicas=3))
        yield server


@pytest.fixture
def namespace() -> str:
    """The namespace the test playbook's steps target (a test parametrizes it to template it)."""
    return "shop"


@pytest.fixture
async def loop(
    temporal_address: str, tmp_path: Path, fake: KubeFake, namespace: str
) -> AsyncIterator[KubeLoop]:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "kube.yaml").write_text(playbook(namespace))
    settings = make_settings(
        temporal_address,
        tmp_path / "data",
        remediation={"include_library": False, "playbook_dirs": [str(tmp_path / "playbooks")]},
        kube={
            "kubeconfig": str(fake.kubeconfig(tmp_path)),
            "namespaces": ["shop"],
            "lease_namespace": "selfheal",
            "poll_seconds": 0.05,
        },
    )
    client = await connect(settings.temporal)
    async with build_worker(client, settings):
        with ApiServer(settings) as api:
            async with api.client() as http:
                yield KubeLoop(fake, http)


async def test_kube_fix_and_wait_heal(loop: KubeLoop) -> None:
    loop.fake.rollouts_complete_after = 2
    view = await loop.run()
    assert view["remediations"][-1]["outcome"] == "healed", view["remediations"]
    dep = loop.fake.get("Deployment", "shop", "checkout")
    assert dep is not None
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
    assert dep["metadata"]["generation"] == 2 and dep["spec"]["replicas"] == 3, "the test step was a dry run"
    writes = sorted(f"{c.verb} {c.resource}" for c in loop.fake.requests if c.verb == "patch")
    assert writes == ["patch deployments", "patch deployments/scale"]
    bodies = await loop.comments(view)
    for step in ("kube fix 1", "kube test 1", "kube_wait deploy 1", "successfully rolled out"):
        assert step in bodies, f"ticket lacks {step!r}"
    assert "(server-side dry run)" in bodies
    assert loop.fake.get("Lease", "selfheal", "selfheal-inflight-cluster-0") is None, (
        "the wait freed the slot"
    )


async def test_stalled_rollout_fails_fast_and_runs_the_rollback_steps(loop: KubeLoop) -> None:
    loop.fake.rollouts_complete_after = 1
    loop.fake.rollouts_stall = True
    view = await loop.run()
    remediation = view["remediations"][-1]
    assert remediation["outcome"] == "rolled_back", remediation
    assert "exceeded its progress deadline" in remediation["reason"]
    dep = loop.fake.get("Deployment", "shop", "checkout")
    assert dep is not None and dep["spec"]["replicas"] == 2, "the explicit rollback step ran"


@pytest.mark.parametrize("namespace", ["{{ params.ns }}"])
async def test_a_rendered_namespace_outside_the_allow_list_is_refused_on_the_ticket(loop: KubeLoop) -> None:
    view = await loop.run(namespace="kube-system")
    remediation = view["remediations"][-1]
    assert remediation["outcome"] == "failed", remediation
    assert "'kube-system' is not in kube.namespaces" in remediation["reason"]
    assert "'kube-system' is not in kube.namespaces" in await loop.comments(view)
    assert [c for c in loop.fake.requests if c.verb != "get"] == [], "nothing was written to the cluster"
