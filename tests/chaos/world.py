"""The long-lived loop the chaos trials run on, and the faults that can hit it.

Real processes: the Temporal dev server, `selfheal worker` and `selfheal api` (bench.common.Stack),
Prometheus and Alertmanager (demo.observability). Beside them, in this process: a metrics target
whose `chaos_pool_exhausted{service}` follows what is deployed (the pool size on the remote's
main), a bare git remote whose post-receive hook logs every deploy, the Jira fake as the tracker
(it can answer 5xx or stall), and a recorder between Alertmanager and the API that forwards each
notification and keeps the answer, so that "accepted" means what Alertmanager was told.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import Stack
from demo.observability import RestartableServer, alertmanager_process, prometheus_process
from devstack.pool import CONFIG, HEALTHY_SIZE, git, pool_playbook, seed_config_repo
from devstack.temporal_server import free_port
from tests.support.jira import JiraFake
from tests.support.metric_target import MetricTarget

HEAL_ALERT = "ChaosPoolExhausted"
#: No playbook matches it: the incident is escalated to humans.
ESCALATE_ALERT = "ChaosUnknownFault"
#: A playbook's circuit breaker allows at most 100 runs per window: one playbook per 50 trials.
PER_PLAYBOOK = 50

RULES = {
    "groups": [
        {
            "name": "chaos",
            "rules": [
                {
                    "alert": HEAL_ALERT,
                    "expr": "chaos_pool_exhausted > 0",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "{{ $labels.service }}: connection pool exhausted"},
                },
                {
                    "alert": ESCALATE_ALERT,
                    "expr": "chaos_unknown_fault > 0",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "{{ $labels.service }}: something nobody has seen"},
                },
            ],
        }
    ]
}


class Remote:
    """The GitOps target: a bare repository; every accepted push is a deploy (post-receive log)."""

    def __init__(self, root: Path, services: list[str]) -> None:
        self.deploy_log = root / "deploys.log"
        self.path, self.work = seed_config_repo(root, services, deploy_log=self.deploy_log)

    def refuse_pushes(self, refuse: bool) -> None:
        """A pre-receive hook that rejects every push (a protected branch, a remote in maintenance)."""
        hook = self.path / "hooks" / "pre-receive"
        if refuse:
            hook.write_text("#!/bin/sh\necho 'chaos: pushes are refused for now' >&2\nexit 1\n")
            hook.chmod(0o755)
        else:
            hook.unlink(missing_ok=True)

    def pool_size(self, service: str) -> int | None:
        try:
            text = git(self.path, "show", f"main:{CONFIG.format(service=service)}")
            return int(yaml.safe_load(text)["pool"]["size"])
        except (subprocess.SubprocessError, KeyError, TypeError, ValueError):
            return None

    def side_effects(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Per incident id: fix commits on main, deploys of a fix, deploys of a rollback."""
        fixes = self._trailer_counts(git(self.path, "log", "--format=%B%x00", "main"), "Selfheal-Incident")
        deploys: dict[str, int] = {}
        rollbacks: dict[str, int] = {}
        lines = self.deploy_log.read_text().splitlines() if self.deploy_log.exists() else []
        for line in lines:
            old, new, _ref = line.split()
            span = new if set(old) == {"0"} else f"{old}..{new}"
            messages = git(self.path, "log", "--format=%B%x00", span)
            for incident in self._trailer_counts(messages, "Selfheal-Incident"):
                deploys[incident] = deploys.get(incident, 0) + 1
            for incident in self._trailer_counts(messages, "Selfheal-Rollback"):
                rollbacks[incident] = rollbacks.get(incident, 0) + 1
        return fixes, deploys, rollbacks

    @staticmethod
    def _trailer_counts(messages: str, trailer: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in messages.split("\x00"):
            for line in message.splitlines():
                if line.startswith(f"{trailer}:"):
                    incident = line.split(":", 1)[1].strip()
                    counts[incident] = counts.get(incident, 0) + 1
        return counts


class ChaosTarget(MetricTarget):
    """`chaos_pool_exhausted{service}` is 1 while the deployed pool size is below 20 (the playbook's
    fix makes it 20), read on every scrape for the trials in flight; `chaos_unknown_fault` is set."""

    def __init__(self, remote: Remote) -> None:
        super().__init__()
        self.remote = remote
        self.watched: dict[str, str] = {}  # service → shard, while its trial runs

    def render(self) -> str:
        for service, shard in list(self.watched.items()):
            size = self.remote.pool_size(service)
            if size is not None:
                self.set(
                    "chaos_pool_exhausted", 1.0 if size < HEALTHY_SIZE else 0.0, service=service, shard=shard
                )
        return super().render()

    def heal_trial(self, service: str, shard: str) -> None:
        self.watched[service] = shard

    def escalate_trial(self, service: str) -> None:
        self.set("chaos_unknown_fault", 1.0, service=service)

    def end_trial(self, service: str) -> None:
        """Whatever happened, the trial's alert resolves from now on."""
        shard = self.watched.pop(service, None)
        if shard is not None:
            self.set("chaos_pool_exhausted", 0.0, service=service, shard=shard)
        self.set("chaos_unknown_fault", 0.0, service=service)


@dataclass
class Delivery:
    service: str
    status: int
    incident_id: str | None
    accepted: bool


class WebhookRecorder:
    """Forwards Alertmanager's notifications to the API and records each answer.

    A 2xx whose body says `accepted` is a notification selfheal promised to keep; an unreachable
    API is answered 502, which Alertmanager retries like any 5xx.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = recorder.forward(self.path, self.headers.get("Authorization", ""), body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):  # Alertmanager gave up waiting
                    self.close_connection = True

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def forward(self, path: str, authorization: str, body: bytes) -> tuple[int, bytes]:
        try:
            resp = httpx.post(
                self.upstream + path,
                content=body,
                headers={"Authorization": authorization, "Content-Type": "application/json"},
                timeout=30,
            )
        except httpx.HTTPError as err:
            return 502, json.dumps({"error": f"API unreachable: {type(err).__name__}"}).encode()
        try:
            service = str(json.loads(body).get("groupLabels", {}).get("service", ""))
            answer = (
                resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
            )
        except ValueError:
            service, answer = "", {}
        accepted = resp.is_success and answer.get("status") == "accepted"
        with self._lock:
            self.deliveries.append(Delivery(service, resp.status_code, answer.get("incident_id"), accepted))
        return resp.status_code, resp.content

    def accepted(self) -> dict[str, int]:
        """Accepted notifications per incident id."""
        counts: dict[str, int] = {}
        with self._lock:
            for d in self.deliveries:
                if d.accepted and d.incident_id:
                    counts[d.incident_id] = counts.get(d.incident_id, 0) + 1
        return counts

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def playbook(shard: int) -> dict[str, Any]:
    """The shard's copy of the pool playbook, verified against `chaos_pool_exhausted`."""
    return pool_playbook(
        f"chaos-pool-raise-{shard}",
        HEAL_ALERT,
        matchers=[f'shard="{shard}"'],
        max_runs=100,
        verify_query='chaos_pool_exhausted{service="{{ params.service }}"}',
        hold_for="1s",
        verify_timeout="90s",
    )


@dataclass
class World:
    root: Path
    stack: Stack
    prometheus: RestartableServer
    alertmanager: RestartableServer
    jira: JiraFake
    remote: Remote
    target: ChaosTarget
    recorder: WebhookRecorder
    #: Restarts per component, for the report.
    restarts: dict[str, int] = field(default_factory=dict)

    # --- the faults --------------------------------------------------------------------------

    async def kill_and_restart(self, name: str, downtime: float) -> None:
        """SIGKILL the process group of `worker`, `api` or `temporal`; start it again on the same
        data and port after `downtime`, and wait until it serves."""
        await asyncio.to_thread(self._kill, name)
        await asyncio.sleep(downtime)
        await asyncio.to_thread(self._restart, name)
        self.restarts[name] = self.restarts.get(name, 0) + 1

    def _kill(self, name: str) -> None:
        if name == "temporal":
            temporal = self.stack.temporal
            assert temporal is not None and temporal.proc is not None
            proc = temporal.proc
        else:
            child = self.stack.child(name)
            assert child.proc is not None
            proc = child.proc
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def _restart(self, name: str) -> None:
        if name == "temporal":
            temporal = self.stack.temporal
            assert temporal is not None
            temporal.proc = None
            temporal.start(timeout=60)
            return
        child = self.stack.child(name)
        before = _count(child.log, "worker started") if name == "worker" else 0
        child.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{name} exited after its restart:\n{child.log.read_text()[-3000:]}")
            if name == "worker" and _count(child.log, "worker started") > before:
                return
            if name == "api" and _ready(self.stack.api_url):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready within 90s of its restart; see {child.log}")

    async def server_down(self, name: str, downtime: float) -> None:
        """Prometheus or Alertmanager killed, then back on the same port and data after `downtime`."""
        server = self.prometheus if name == "prometheus" else self.alertmanager
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(downtime)
        await asyncio.to_thread(server.start_again)
        self.restarts[name] = self.restarts.get(name, 0) + 1

    async def tracker_down(self, downtime: float, *, stall: bool) -> None:
        """Jira answers 503 to everything, or takes longer than the client's timeout, for `downtime`."""
        if stall:
            self.jira.stall_for(downtime, delay=TRACKER_TIMEOUT + 1)
        else:
            self.jira.outage_for(downtime, status=503)
        await asyncio.sleep(downtime)

    async def pushes_refused(self, downtime: float) -> None:
        self.remote.refuse_pushes(True)
        try:
            await asyncio.sleep(downtime)
        finally:
            self.remote.refuse_pushes(False)

    def assert_alive(self) -> None:
        self.stack.assert_alive()
        temporal = self.stack.temporal
        if temporal is None or not temporal.alive():
            raise RuntimeError("the Temporal dev server died outside a fault")

    # --- what the loop did --------------------------------------------------------------------

    def tickets(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per incident id: Jira issues labelled with it, and comments repeating a dedup marker."""
        issues: dict[str, int] = {}
        repeated: dict[str, int] = {}
        for key, issue in self.jira.issues.items():
            for label in issue["fields"].get("labels") or []:
                if not label.startswith("selfheal-") or label == "selfheal-escalated":
                    continue
                incident = label.removeprefix("selfheal-")
                issues[incident] = issues.get(incident, 0) + 1
                markers: dict[str, int] = {}
                for comment in self.jira.comments(key):
                    for part in str(comment["body"]).split("(selfheal-ref ")[1:]:
                        marker = part.split(")", 1)[0]
                        markers[marker] = markers.get(marker, 0) + 1
                extra = sum(n - 1 for n in markers.values() if n > 1)
                if extra:
                    repeated[incident] = repeated.get(incident, 0) + extra
        return issues, repeated


#: The Jira client's timeout in the chaos run: a stalled tracker makes it give up after this.
TRACKER_TIMEOUT = 3.0


def _count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_world(root: Path, services: list[str], shards: int) -> Iterator[World]:
    """Everything started once for the whole run, and stopped whatever happened."""
    with ExitStack() as stop:
        remote = Remote(root / "git", services)
        target = ChaosTarget(remote).start()
        stop.callback(target.stop)
        jira = JiraFake(users={"bot": "bot-token"}).start()
        stop.callback(jira.stop)
        pb_dir = root / "playbooks"
        pb_dir.mkdir()
        for shard in range(shards):
            (pb_dir / f"pool-{shard}.yaml").write_text(yaml.safe_dump(playbook(shard), sort_keys=False))
        stack = Stack(root=root / "stack", task_queue="selfheal-chaos")
        # The API's port is fixed before anything points at it: the recorder forwards there.
        stack.port = free_port()
        recorder = WebhookRecorder(f"http://127.0.0.1:{stack.port}")
        stop.callback(recorder.stop)
        alertmanager = alertmanager_process(
            root / "alertmanager",
            f"{recorder.url}/api/v1/alerts",
            stack.token,
            group_by=["alertname", "service"],
        )
        stop.callback(alertmanager.stop)
        prometheus = prometheus_process(
            root / "prometheus", [target.url], yaml.safe_dump(RULES), alertmanager.url
        )
        stop.callback(prometheus.stop)
        stack.config = {
            "tracker": {
                "kind": "jira",
                "jira": {
                    "url": jira.url,
                    "project": "OPS",
                    "user": "bot",
                    "api_token": "bot-token",
                    "cloud": False,
                    "timeout_seconds": TRACKER_TIMEOUT,
                },
            },
            "remediation": {
                "include_library": False,
                "playbook_dirs": [str(pb_dir)],
                "repos": {"config": {"path": str(remote.work)}},
                "prometheus_url": prometheus.url,
                "alertmanager_url": alertmanager.url,
                "verify_poll_seconds": 0.5,
            },
            "evidence": {"prometheus_url": prometheus.url},
        }
        stack.env_extra = dict(CHAOS_ENV)
        stop.callback(stack.stop)
        stack.start()
        yield World(root, stack, prometheus, alertmanager, jira, remote, target, recorder)


#: Shorter than the defaults so a killed worker's work is picked up in seconds rather than
#: minutes: its activities time out after 10 s (the evidence and investigation activities keep
#: their 120 s floor) and its sticky task queue is given up after 5 s.
CHAOS_ENV = {
    "SELFHEAL_INCIDENT__ACTIVITY_TIMEOUT_SECONDS": "10",
    "SELFHEAL_TEMPORAL__STICKY_TIMEOUT_SECONDS": "5",
}
