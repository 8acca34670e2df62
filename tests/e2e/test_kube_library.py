"""The library's Kubernetes playbooks heal stock kube-prometheus alerts, end to end on real parts.

Real Alertmanager delivers `KubePodCrashLooping` / `KubeDeploymentRolloutStuck` labelled exactly as
kubernetes-mixin labels them; real Prometheus scrapes a kube-state-metrics stand-in whose series
follow the cluster (the Kubernetes API test server); the fix is a real git commit pushed to a bare
GitOps remote, whose post-receive hook applies the manifest to the cluster as Argo CD or Flux would;
`kube_wait` watches the rollout through the real `kubernetes` client.

The playbooks are the library's own files with only their clocks shortened (verify windows, holds
and timeouts in minutes become seconds) and `kustomize build` replaced by a `grep` (no kustomize on
the test machine): matchers, params (the Deployment found through `kube_pod_owner` ⋈
`kube_replicaset_owner`), diagnose, fix and deploy steps run as shipped.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import git
import httpx
import pytest
import yaml

from connectors.temporal import connect
from demo.observability import alertmanager_server, prometheus_server
from playbooks.loader import LIBRARY_DIR
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.kube import KubeFake, objects
from tests.support.metric_target import MetricTarget

pytestmark = pytest.mark.timeout(240)

NS, APP, POD = "shop", "cart", "cart-7d9f8b6c5d-x2x7k"
REPLICASET = "cart-7d9f8b6c5d"
MANIFEST = f"apps/{NS}/{APP}/deployment.yaml"
GOOD_IMAGE, BAD_IMAGE = "registry.example/cart:1.4.2", "registry.example/cart:1.5.0-rc1"
#: The container OOMs below this limit (what the workload really needs).
NEEDS_MIB = 700


def mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


class Cluster(MetricTarget):
    """kube-state-metrics for the fake cluster, and the controllers' side of it: on every scrape
    a Deployment whose spec changed finishes its rollout (or, with a bad image, stalls), a
    container below its needed memory crash-loops, and Alertmanager is told when all is well."""

    def __init__(self, fake: KubeFake) -> None:
        super().__init__()
        self.fake = fake
        self.restarts = 0.0
        self.alertmanager_url = ""
        self.firing: dict[str, Any] | None = None

    def render(self) -> str:
        dep = self.fake.get("Deployment", NS, APP)
        assert dep is not None
        container = dep["spec"]["template"]["spec"]["containers"][0]
        if dep["metadata"].get("generation", 1) > dep["status"].get("observedGeneration", 1):
            if container["image"] == BAD_IMAGE:
                self.fake.stall_rollout(NS, APP)
            else:
                self.fake.complete_rollout("Deployment", NS, APP)
            dep = self.fake.get("Deployment", NS, APP)
            assert dep is not None
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory", "0")
        oom = mib(limit) < NEEDS_MIB
        progressing = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
        stuck = progressing["status"] == "False"
        if oom:
            self.restarts += 1
        labels = {"namespace": NS, "job": "kube-state-metrics"}
        self.set("kube_pod_owner", 1, **labels, pod=POD, owner_kind="ReplicaSet", owner_name=REPLICASET)
        self.set(
            "kube_replicaset_owner",
            1,
            **labels,
            replicaset=REPLICASET,
            owner_kind="Deployment",
            owner_name=APP,
        )
        self.set("kube_pod_container_status_restarts_total", self.restarts, **labels, pod=POD, container=APP)
        for reason in ("OOMKilled", "Error"):
            self.set(
                "kube_pod_container_status_last_terminated_reason",
                1.0 if reason == "OOMKilled" else 0.0,
                **labels,
                pod=POD,
                container=APP,
                reason=reason,
            )
        for status in ("true", "false"):
            value = 1.0 if (status == "false") == stuck else 0.0
            self.set(
                "kube_deployment_status_condition",
                value,
                **labels,
                deployment=APP,
                condition="Progressing",
                status=status,
            )
        if self.firing is not None and not oom and not stuck:
            self._resolve()
        return super().render()

    def _resolve(self) -> None:
        """Prometheus would stop the alert; here the healthy cluster tells Alertmanager itself."""
        assert self.firing is not None
        ended = {**self.firing, "endsAt": datetime.now(UTC).isoformat()}
        httpx.post(f"{self.alertmanager_url}/api/v2/alerts", json=[ended], timeout=5).raise_for_status()
        self.firing = None


def deployment_yaml(image: str, memory: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": APP, "namespace": NS},
            "spec": {
                "replicas": 3,
                "template": {
                    "spec": {
                        "containers": [
                            {"name": APP, "image": image, "resources": {"limits": {"memory": memory}}}
                        ]
                    }
                },
            },
        },
        sort_keys=False,
    )


HOOK = '''#!{python}
"""post-receive: apply the pushed manifest to the cluster, as a GitOps controller would."""
import subprocess, httpx, yaml
text = subprocess.run(["git", "show", "main:{manifest}"], capture_output=True, text=True, check=True).stdout
containers = yaml.safe_load(text)["spec"]["template"]["spec"]["containers"]
patch = {{"spec": {{"template": {{"spec": {{"containers": containers}}}}}}}}
httpx.patch("{url}/apis/apps/v1/namespaces/{ns}/deployments/{app}", json=patch, timeout=10,
            headers={{"Authorization": "Bearer {token}", "Content-Type": "application/merge-patch+json"}},
            ).raise_for_status()
with open("{log}", "a") as f:
    f.write("deployed\\n")
'''


def gitops_repos(root: Path, fake: KubeFake, image: str, memory: str) -> tuple[Path, Path]:
    """The GitOps remote (seeded a day ago, its hook deploying to the fake) and selfheal's clone."""
    remote = root / "gitops.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    seed = root / "seed"
    repo = git.Repo.init(seed, initial_branch="main")
    (seed / MANIFEST).parent.mkdir(parents=True)
    (seed / MANIFEST).write_text(deployment_yaml(image, memory))
    (seed / f"apps/{NS}/{APP}/kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    commit(repo, "cart: initial manifests", datetime.now(UTC) - timedelta(days=1))
    repo.create_remote("origin", str(remote)).push("main")
    hook = remote / "hooks" / "post-receive"
    hook.write_text(
        HOOK.format(
            python=sys.executable,
            manifest=MANIFEST,
            url=fake.url,
            ns=NS,
            app=APP,
            token=fake.token,
            log=root / "deploys.log",
        )
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    work = root / "work"
    git.Repo.clone_from(str(remote), work)
    return remote, work


def commit(repo: git.Repo, message: str, when: datetime) -> None:
    repo.git.add(A=True)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
    env = {
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    with repo.git.custom_environment(**env):
        repo.git.commit("-m", message)


def library_copy(name: str, directory: Path) -> None:
    """The library playbook with its clocks shortened and `kustomize build` replaced by a grep."""
    doc = yaml.safe_load((LIBRARY_DIR / f"{name}.yaml").read_text())
    doc["test"] = [
        {
            "command": {
                "argv": [
                    "grep",
                    "-q",
                    "image:",
                    MANIFEST.replace(NS, "{{ params.namespace }}").replace(APP, "{{ params.deployment }}"),
                ],
                "timeout": "30s",
            }
        }
    ]
    verify = doc["verify"]
    verify["query"] = verify["query"].replace("[10m]", "[15s]")
    verify.update(hold_for="3s", timeout="120s")
    for step in doc["deploy"]:
        if "kube_wait" in step:
            step["kube_wait"]["timeout"] = "60s"
    doc["policy"].update(cooldown="0s")
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


class Loop:
    def __init__(
        self, http: httpx.AsyncClient, cluster: Cluster, remote: Path, root: Path, prom_url: str
    ) -> None:
        self.http, self.cluster, self.remote, self.root = http, cluster, remote, root
        self.prom_url = prom_url

    async def scraped(self, promql: str) -> None:
        """Until Prometheus answers `promql` with data: a stock alert fires only after its `for:`,
        long after kube-state-metrics' series exist, so the test fires only once they do."""
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        async with httpx.AsyncClient() as client:
            while datetime.now(UTC) < deadline:
                resp = await client.get(f"{self.prom_url}/api/v1/query", params={"query": promql})
                if resp.status_code == 200 and resp.json()["data"]["result"]:
                    return
                await asyncio.sleep(0.2)  # the poll interval of a condition with a deadline
        raise AssertionError(f"Prometheus never returned {promql}")

    async def fire(self, labels: dict[str, str], summary: str) -> None:
        alert = {
            "labels": labels,
            "annotations": {"summary": summary, "runbook_url": "https://runbooks.prometheus-operator.dev/"},
            "startsAt": datetime.now(UTC).isoformat(),
            "generatorURL": "http://prometheus-k8s-0:9090/graph",
        }
        self.cluster.firing = alert
        resp = await self.http.post(f"{self.cluster.alertmanager_url}/api/v2/alerts", json=[alert])
        resp.raise_for_status()

    async def closed_incident(self, alertname: str) -> dict[str, Any]:
        incident_id = ""
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while not incident_id and datetime.now(UTC) < deadline:
            listed = (await self.http.get("/api/v1/incidents")).json()["incidents"]
            incident_id = next((i["id"] for i in listed if i["alertname"] == alertname), "")
        assert incident_id, f"no incident for {alertname}"
        return await wait_for_incident(self.http, incident_id, lambda v: v["stage"] == "closed", 180)

    def fixes(self, incident_id: str) -> list[git.Commit]:
        return [
            c
            for c in git.Repo(self.remote).iter_commits("main")
            if f"Selfheal-Incident: {incident_id}" in c.message
        ]

    def deploys(self) -> int:
        log = self.root / "deploys.log"
        return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def fake() -> Iterator[KubeFake]:
    with KubeFake() as server:
        yield server


async def start_loop(
    temporal_address: str, root: Path, fake: KubeFake, playbook: str, *, image: str, memory: str
) -> AsyncIterator[Loop]:
    dep = objects.deployment(NS, APP, replicas=3)
    dep["spec"]["template"]["spec"]["containers"] = [
        {"name": APP, "image": image, "resources": {"limits": {"memory": memory}}}
    ]
    fake.add(dep)
    remote, work = gitops_repos(root, fake, image, memory)
    (root / "playbooks").mkdir()
    library_copy(playbook, root / "playbooks")
    cluster = Cluster(fake).start()
    try:
        with prometheus_server(root / "prom", [cluster.address]) as prom_url:
            settings = make_settings(
                temporal_address,
                root / "data",
                remediation={
                    "include_library": False,
                    "playbook_dirs": [str(root / "playbooks")],
                    "repos": {"gitops": {"path": str(work)}},
                    "prometheus_url": prom_url,
                    "verify_poll_seconds": 0.5,
                },
                kube={
                    "kubeconfig": str(fake.kubeconfig(root)),
                    "namespaces": [NS],
                    "lease_namespace": "selfheal",
                    "poll_seconds": 0.1,
                },
            )
            api = ApiServer(settings)
            token = settings.webhook_token.get_secret_value()  # type: ignore[union-attr]
            with alertmanager_server(root / "am", webhook_url=f"{api.url}/api/v1/alerts", token=token) as am:
                cluster.alertmanager_url = am
                settings.remediation.alertmanager_url = am
                client = await connect(settings.temporal)
                async with build_worker(client, settings):
                    with api:
                        async with api.client() as http:
                            yield Loop(http, cluster, remote, root, prom_url)
    finally:
        cluster.stop()


async def test_oom_crash_loop_heals_by_raising_the_limit_in_git_and_waiting_for_the_rollout(
    temporal_address: str, tmp_path: Path, fake: KubeFake
) -> None:
    loops = start_loop(
        temporal_address, tmp_path, fake, "oom-raise-memory-limit", image=GOOD_IMAGE, memory="512Mi"
    )
    lp = await anext(loops)
    try:
        await lp.scraped('kube_replicaset_owner{owner_name="cart"} and on() kube_pod_owner')
        await lp.scraped("sum(increase(kube_pod_container_status_restarts_total[15m])) > 0")
        await lp.fire(
            {
                "alertname": "KubePodCrashLooping",
                "namespace": NS,
                "pod": POD,
                "container": APP,
                "reason": "CrashLoopBackOff",
                "job": "kube-state-metrics",
                "severity": "warning",
                "uid": "4f2c1f0e-6a3b-4c1d-9e8f-2b7a6c5d4e3f",
            },
            f'Pod {NS}/{POD} ({APP}) is in waiting state (reason: "CrashLoopBackOff").',
        )
        view = await lp.closed_incident("KubePodCrashLooping")
        assert view["outcome"] == "healed", view["remediations"]
        assert view["remediations"][-1]["playbook"] == "oom-raise-memory-limit"
        fixes = lp.fixes(view["id"])
        assert len(fixes) == 1 and lp.deploys() == 1
        manifest = yaml.safe_load(git.Repo(lp.remote).git.show(f"main:{MANIFEST}"))
        limit = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        assert limit == "768Mi"
        dep = fake.get("Deployment", NS, APP)
        assert dep is not None and dep["status"]["observedGeneration"] == dep["metadata"]["generation"] == 2
        kinds = [e["kind"] for e in view["timeline"]]
        assert "playbook_matched" in kinds and "remediation_healed" in kinds
        ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
        bodies = "\n".join(c["body"] for c in ticket["comments"])
        assert "kube_wait deploy 2" in bodies and "successfully rolled out" in bodies
    finally:
        await loops.aclose()


async def test_stuck_rollout_heals_by_reverting_the_bad_commit(
    temporal_address: str, tmp_path: Path, fake: KubeFake
) -> None:
    loops = start_loop(
        temporal_address, tmp_path, fake, "rollout-stuck-revert", image=GOOD_IMAGE, memory="1Gi"
    )
    lp = await anext(loops)
    try:
        # Someone ships a release candidate that never becomes ready: pushed and applied, it stalls.
        work = git.Repo(tmp_path / "seed")
        (tmp_path / "seed" / MANIFEST).write_text(deployment_yaml(BAD_IMAGE, "1Gi"))
        commit(work, "cart: ship 1.5.0-rc1", datetime.now(UTC) - timedelta(minutes=2))
        env = {**os.environ}
        subprocess.run(
            ["git", "push", "origin", "main"], cwd=tmp_path / "seed", env=env, check=True, capture_output=True
        )
        await lp.scraped('kube_deployment_status_condition{condition="Progressing",status="false"} == 1')
        await lp.fire(
            {
                "alertname": "KubeDeploymentRolloutStuck",
                "namespace": NS,
                "deployment": APP,
                "job": "kube-state-metrics",
                "severity": "warning",
                "container": "kube-rbac-proxy-main",
            },
            f"Rollout of deployment {NS}/{APP} is not progressing for longer than 15 minutes.",
        )
        view = await lp.closed_incident("KubeDeploymentRolloutStuck")
        assert view["outcome"] == "healed", view["remediations"]
        fixes = lp.fixes(view["id"])
        assert len(fixes) == 1 and fixes[0].message.startswith("selfheal: rollout-stuck-revert")
        assert BAD_IMAGE in git.Repo(lp.remote).git.show(fixes[0].hexsha), "the fix reverts the release"
        dep = fake.get("Deployment", NS, APP)
        assert dep is not None
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD_IMAGE
        assert lp.deploys() == 2, "the bad release, then the revert"
    finally:
        await loops.aclose()
