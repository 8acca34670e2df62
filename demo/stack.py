"""Everything the demo runs, started in dependency order and stopped in reverse: the config repo,
the shop, Alertmanager, Prometheus, Temporal (unless one is given), selfheal's worker and API,
and the load generator. All on 127.0.0.1, on free ports, with data under one directory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from demo.configrepo import ConfigRepo, shop_argv
from demo.load import LoadGenerator
from demo.observability import Server, ServiceError, Timings, start_alertmanager, start_prometheus
from devstack.stack import Child, wait_for_api, write_secret
from devstack.temporal_server import TemporalDevServer, free_port

PLAYBOOKS_DIR = Path(__file__).resolve().parent / "playbooks"
SERVICE = "shop"
#: The demo's on-call: an approver in `auth.users`, whose token is in `<data_dir>/api-token`.
DEMO_APPROVER = "demo-oncall"


def evidence_settings(prom_url: str, remote: Path, shop_log: Path, window: str) -> dict[str, Any]:
    """What the tickets show: golden signals as graphs, affected users, suspect commits, logs."""
    sel = 'service="{service}"'
    return {
        "prometheus_url": prom_url,
        # The remote is what is deployed: its commits are the suspects (selfheal's clone may lag).
        "change_repos": {"config": str(remote)},
        "change_window_seconds": 3600,
        # The demo lives for about a minute: graph the last five minutes at the scrape interval.
        "graph_window_seconds": 300,
        "graph_min_step_seconds": 1,
        "services": {
            SERVICE: {
                "golden_signals": {
                    "5xx ratio": f'sum(rate(http_requests_total{{{sel},code=~"5.."}}[{window}]))'
                    f" / sum(rate(http_requests_total{{{sel}}}[{window}]))",
                    "p90 latency by route": "histogram_quantile(0.9, sum by (le, route)"
                    f" (rate(http_request_duration_seconds_bucket{{{sel}}}[{window}])))",
                    "DB pool timeouts/s": f"sum(rate(shop_db_pool_timeouts_total{{{sel}}}[{window}]))",
                },
                "affected_users": f"max(shop_affected_users{{{sel}}})",
                "paths": ["services/{service}/**", "flags/{service}.yaml"],
                "log_command": ["tail", "-n", "200", str(shop_log)],
            }
        },
    }


#: `remediation.services.shop`: the shop's test, deploy and verify, as its playbooks do them.
SERVICE_DEFAULTS: dict[str, Any] = {
    "repo": "config",
    "test": [
        {"command": {"argv": ["python3", "bin/check-config", "{{ params.service }}"], "timeout": "30s"}}
    ],
    "deploy": [
        {"git_push": {"branch": "main"}},
        {
            "name": "reload {{ params.service }} with the pushed config",
            "http": {"method": "POST", "url": "{{ settings.shop_url }}/-/reload", "expect_status": [200]},
        },
    ],
    "verify": {"hold_for": "3s", "timeout": "60s"},
}


class DemoStack:
    def __init__(
        self,
        root: Path,
        *,
        temporal_address: str | None = None,
        timings: Timings | None = None,
        users: int = 8,
    ) -> None:
        self.root = root.resolve()
        self.temporal_address = temporal_address
        self.timings = timings or Timings()
        self.users = users
        self.logs = self.root / "logs"
        self.token = secrets.token_urlsafe(24)  # Alertmanager's: it posts alerts, nothing else
        #: The demo's on-call approver (user `DEMO_APPROVER`), for reads and the novel incident's decision.
        self.api_token = secrets.token_urlsafe(32)
        self.api_port = free_port()
        self.repo = ConfigRepo(self.root / "repo", SERVICE)
        self.temporal: TemporalDevServer | None = None
        self.shop: subprocess.Popen[bytes] | None = None
        self.shop_url = ""
        self.alertmanager: Server | None = None
        self.prometheus: Server | None = None
        self.children: list[Child] = []
        self.load: LoadGenerator | None = None
        self.config_file = self.root / "selfheal.yaml"
        self.data_dir = self.root / "selfheal"

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def prom_url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    @property
    def am_url(self) -> str:
        assert self.alertmanager is not None
        return self.alertmanager.url

    @property
    def shop_log(self) -> Path:
        return self.logs / "shop.log"

    def start(self, progress: Any = None) -> DemoStack:
        """Start everything; `progress(text)` is told each step. Stops what started on failure."""
        say = progress or (lambda _text: None)
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.repo.create()
            self._start_shop()
            say(f"shop service {self.shop_url} (config: {self.repo.remote})")
            self.alertmanager = start_alertmanager(
                self.root / "alertmanager", f"{self.api_url}/api/v1/alerts", self.token, self.timings
            )
            say(f"Alertmanager {self.am_url} → webhook {self.api_url}/api/v1/alerts")
            host_port = self.shop_url.split("://", 1)[1]
            self.prometheus = start_prometheus(
                self.root / "prometheus", [host_port], self.am_url, self.timings
            )
            say(f"Prometheus {self.prom_url} (scrape/eval {self.timings.scrape_interval})")
            address = self.temporal_address
            if address is None:
                self.temporal = TemporalDevServer(
                    self.root / "temporal.db",
                    port=free_port(),
                    ui_port=None,
                    log_file=self.logs / "temporal.log",
                )
                self.temporal.start(attempts=3)
                address = self.temporal.address
                say(f"Temporal dev server {address}")
            self._write_config(address)
            self._start_selfheal()
            say(f"selfheal worker + API {self.api_url}")
            self.load = LoadGenerator(self.shop_url, users=self.users).start()
            self._wait_for_data()
            say(f"load generator: {self.users} users; Prometheus sees the shop")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_shop(self) -> None:
        port_file = self.root / "shop.port"
        out = open(self.logs / "shop.out", "ab")
        try:
            self.shop = subprocess.Popen(
                shop_argv(self.repo, port_file, self.shop_log),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.shop.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"the shop did not start; see {self.logs / 'shop.out'}")
            time.sleep(0.05)
        self.shop_url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def settings_dict(self, temporal_address: str) -> dict[str, Any]:
        return {
            "env": "dev",
            "data_dir": str(self.data_dir),
            "host": "127.0.0.1",
            "port": self.api_port,
            "webhook_token": self.token,
            "auth": {
                "users": {
                    DEMO_APPROVER: {
                        "roles": ["approver"],
                        "token_sha256": hashlib.sha256(self.api_token.encode()).hexdigest(),
                    }
                }
            },
            "temporal": {"address": temporal_address, "task_queue": "selfheal-demo-" + secrets.token_hex(4)},
            "incident": {"resolve_quiet_seconds": 30, "activity_timeout_seconds": 30},
            "remediation": {
                "include_library": False,
                "playbook_dirs": [str(PLAYBOOKS_DIR)],
                "repos": {"config": {"path": str(self.repo.selfheal_clone)}},
                "prometheus_url": self.prom_url,
                "alertmanager_url": self.am_url,
                "verify_poll_seconds": 0.5,
                "lock_retry_seconds": 2,
                "playbook_settings": {"shop_url": self.shop_url},
                # How an approved proposal (the investigation's revert) is tested, deployed and
                # verified for the shop; verify is the default: the alert resolves and stays so.
                "services": {SERVICE: SERVICE_DEFAULTS},
            },
            "evidence": evidence_settings(
                self.prom_url, self.repo.remote, self.shop_log, self.timings.rate_window
            ),
        }

    def _write_config(self, temporal_address: str) -> None:
        self.config_file.write_text(yaml.safe_dump(self.settings_dict(temporal_address), sort_keys=False))
        self.config_file.chmod(0o600)  # it holds the webhook token
        # Where `selfheal approve` (SELFHEAL_CONFIG=<this config>) finds the approver's token.
        write_secret(self.data_dir / "api-token", self.api_token)

    def _start_selfheal(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
        env["SELFHEAL_CONFIG"] = str(self.config_file)
        exe = [sys.executable, "-m", "selfheal"]
        self.children = [
            Child("worker", [*exe, "worker"], env, self.logs / "worker.log"),
            Child("api", [*exe, "api"], env, self.logs / "api.log"),
        ]
        for child in self.children:
            child.start()
        wait_for_api(self.children, self.api_url, 60, self.logs, who="selfheal ")

    def _wait_for_data(self, timeout: float = 30) -> None:
        """Until Prometheus has a request rate for the shop: alerts and graphs need a baseline."""
        deadline = time.monotonic() + timeout
        query = f'sum(rate(http_requests_total{{service="{SERVICE}"}}[{self.timings.rate_window}])) > 0'
        while time.monotonic() < deadline:
            if self.prom_query(query):
                return
            time.sleep(0.25)
        raise ServiceError(f"Prometheus has no request rate for the shop after {timeout:.0f}s")

    def stop(self) -> None:
        """Stop everything started, newest first; safe to call twice."""
        if self.load is not None:
            self.load.stop()
            self.load = None
        for child in reversed(self.children):
            child.stop(timeout=5)  # a worker drains in-flight activities; the demo need not wait
        self.children = []
        for server in (self.prometheus, self.alertmanager):
            if server is not None:
                server.stop()
        self.prometheus = self.alertmanager = None
        if self.shop is not None and self.shop.poll() is None:
            try:
                os.killpg(self.shop.pid, 15)
                self.shop.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.shop.pid, 9)
        self.shop = None
        if self.temporal is not None:
            self.temporal.stop()
            self.temporal = None

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- clients ----------------------------------------------------------------------------------

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.api_token}"}, timeout=30
        )

    def prom_query(self, query: str) -> list[tuple[dict[str, str], float]]:
        resp = httpx.get(f"{self.prom_url}/api/v1/query", params={"query": query}, timeout=5)
        resp.raise_for_status()
        return [(r["metric"], float(r["value"][1])) for r in resp.json()["data"]["result"]]

    def firing(self, alertname: str) -> bool:
        """Whether Prometheus has the alert firing for the shop."""
        resp = httpx.get(f"{self.prom_url}/api/v1/alerts", timeout=5)
        resp.raise_for_status()
        return any(
            a["labels"].get("alertname") == alertname and a["state"] == "firing"
            for a in resp.json()["data"]["alerts"]
        )

    def am_active(self) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.am_url}/api/v2/alerts", params={"active": "true"}, timeout=5)
        resp.raise_for_status()
        alerts: list[dict[str, Any]] = resp.json()
        return alerts

    def reload_shop(self, by: str) -> dict[str, Any]:
        resp = httpx.post(f"{self.shop_url}/-/reload", headers={"User-Agent": by}, timeout=10)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def deploys(self) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.shop_url}/-/deploys", timeout=5)
        resp.raise_for_status()
        deploys: list[dict[str, Any]] = resp.json()["deploys"]
        return deploys
