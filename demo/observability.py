"""Prometheus (rules for the shop's SLOs) and Alertmanager (webhook → selfheal) as our own children.

Both run on 127.0.0.1, on free ports, with their data in the demo's directory, never as the
system services. Timings are short so the loop shows in seconds; `Timings` names them so the
demo and the benchmark can report them beside the measured latencies.

`prometheus_server` and `alertmanager_server` are the plain versions (any targets, optional
rules and webhook) as context managers, for the benchmarks and the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack.temporal_server import free_port

PROMETHEUS_BIN = os.environ.get("SELFHEAL_PROMETHEUS_BIN", "/usr/bin/prometheus")
ALERTMANAGER_BIN = os.environ.get("SELFHEAL_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Timings:
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    #: Window of every rate() in the rules and the verify queries.
    rate_window: str = "5s"
    rule_for: str = "2s"
    resend_delay: str = "1s"
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "1h"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def rules_yaml(t: Timings) -> str:
    """The shop's alerting rules. The generic 5xx alert stands aside (`unless`) when a more
    specific one explains the errors, so each fault pages exactly once: an inhibition that
    holds at evaluation time, not only at notification time."""
    w = t.rate_window
    ratio = (
        f'sum by (service) (rate(http_requests_total{{code=~"5.."}}[{w}]))'
        f" / sum by (service) (rate(http_requests_total[{w}]))"
    )
    pool = f"sum by (service, pool) (rate(shop_db_pool_timeouts_total[{w}]))"
    flag_ratio = (
        f'sum by (service, feature_flag) (rate(http_requests_total{{feature_flag!="none",code=~"5.."}}[{w}]))'
        f' / sum by (service, feature_flag) (rate(http_requests_total{{feature_flag!="none"}}[{w}]))'
    )
    p90 = (
        "histogram_quantile(0.9, sum by (le, service, route)"
        f" (rate(http_request_duration_seconds_bucket[{w}])))"
    )
    doc = {
        "groups": [
            {
                "name": "shop-slo",
                "rules": [
                    {
                        "alert": "DatabaseConnectionPoolExhausted",
                        "expr": f"{pool} > 0",
                        "for": t.rule_for,
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "{{ $labels.service }}: requests time out waiting for a DB connection",
                            "description": "{{ $value | humanize }} timeouts/s on pool {{ $labels.pool }}",
                        },
                    },
                    {
                        "alert": "FeatureFlagErrorRatioHigh",
                        "expr": f"({flag_ratio}) > 0.05",
                        "for": t.rule_for,
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "{{ $labels.service }}: requests served with flag "
                            "{{ $labels.feature_flag }} fail",
                            "description": "5xx ratio with the flag on: {{ $value | humanizePercentage }}",
                        },
                    },
                    {
                        "alert": "HighErrorRatio",
                        "expr": f"(({ratio}) > 0.05)"
                        f" unless on (service) ({pool} > 0)"
                        f" unless on (service) (max by (service) ({flag_ratio}) > 0.05)",
                        "for": t.rule_for,
                        "labels": {"severity": "critical"},
                        "annotations": {
                            "summary": "{{ $labels.service }} 5xx ratio above 5%",
                            "description": "5xx ratio {{ $value | humanizePercentage }}",
                            "revert_window": "2m",
                        },
                    },
                    {
                        "alert": "HighLatency",
                        "expr": f"({p90}) > 0.3",
                        "for": t.rule_for,
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "{{ $labels.service }} {{ $labels.route }} p90 latency above 300ms",
                            "description": "p90 {{ $value | humanizeDuration }}",
                        },
                    },
                ],
            }
        ]
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def binary(path: str) -> str | None:
    return shutil.which(path)


class Server:
    """One server process in its own process group, ready once `/-/ready` answers 200."""

    def __init__(self, name: str, argv: list[str], url: str, log_file: Path) -> None:
        self.name = name
        self.url = url
        self.log_file = log_file
        with open(log_file, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True when ready; False when the process died (e.g. its port was taken) or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-2000:]

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class RestartableServer:
    """A server that can crash and come back on the same port and data: outages in chaos runs.

    Callers keep its URL across `kill` / `start_again`, as clients of a real one would.
    """

    def __init__(self, name: str, argv_for_port: Callable[[int], list[str]], workdir: Path) -> None:
        self.name = name
        self._argv_for_port = argv_for_port
        self._workdir = workdir
        self.server = _start(name, argv_for_port, workdir)
        self.url = self.server.url
        self.port = int(self.url.rsplit(":", 1)[1])
        self.restarts = 0

    def alive(self) -> bool:
        return self.server.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, no clean shutdown (what a crash or an OOM kill does)."""
        if self.server.proc.poll() is None:
            try:
                os.killpg(self.server.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.server.proc.wait(10)

    def start_again(self, timeout: float = 60.0) -> None:
        """Start on the same port and data directory; raises when it does not get ready."""
        self.kill()
        self.restarts += 1
        log = self._workdir / f"{self.name}-restart-{self.restarts}.log"
        self.server = Server(self.name, self._argv_for_port(self.port), self.url, log)
        if not self.server.wait_ready(timeout):
            raise ServiceError(f"{self.name} did not come back on {self.url}; see {log}")

    def stop(self) -> None:
        self.server.stop()


def _start(name: str, argv_for_port: Any, workdir: Path, attempts: int = 3) -> Server:
    """Start on a free port, retrying when the port was taken between our probe and the bind."""
    for attempt in range(attempts):
        port = free_port()
        server = Server(
            name, argv_for_port(port), f"http://127.0.0.1:{port}", workdir / f"{name}-{attempt}.log"
        )
        if server.wait_ready():
            return server
        server.stop()
    raise ServiceError(f"{name} did not start; see {workdir}/{name}-*.log")


def start_alertmanager(workdir: Path, webhook_url: str, token: str, t: Timings) -> Server:
    exe = binary(ALERTMANAGER_BIN)
    if exe is None:
        raise ServiceError(f"{ALERTMANAGER_BIN} is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "route": {
            "receiver": "selfheal",
            "group_by": ["alertname", "service"],
            "group_wait": t.group_wait,
            "group_interval": t.group_interval,
            "repeat_interval": t.repeat_interval,
        },
        "receivers": [
            {
                "name": "selfheal",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    cfg.chmod(0o600)  # it holds the webhook token

    def argv(port: int) -> list[str]:
        return [
            exe,
            f"--config.file={cfg}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    return _start("alertmanager", argv, workdir)


def _supports(exe: str, flag: str) -> bool:
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30, check=False)
    return flag in out.stdout + out.stderr


def start_prometheus(workdir: Path, targets: list[str], alertmanager_url: str, t: Timings) -> Server:
    exe = binary(PROMETHEUS_BIN)
    if exe is None:
        raise ServiceError(f"{PROMETHEUS_BIN} is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yml").write_text(rules_yaml(t))
    config = {
        "global": {"scrape_interval": t.scrape_interval, "evaluation_interval": t.evaluation_interval},
        "rule_files": [str(workdir / "rules.yml")],
        "alerting": {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [alertmanager_url.split("://", 1)[1]]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": "shop",
                "scrape_interval": t.scrape_interval,
                "scrape_timeout": t.scrape_interval,
                "static_configs": [{"targets": targets}],
            }
        ],
    }
    argv = _prometheus_argv(exe, workdir, config, resend_delay=t.resend_delay, external_url=True)
    return _start("prometheus", argv, workdir)


def _prometheus_argv(
    exe: str, workdir: Path, config: dict[str, Any], *, resend_delay: str, external_url: bool
) -> Callable[[int], list[str]]:
    """Write the config and say how Prometheus starts on a port (the resend delay where supported)."""
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    resend = _supports(exe, "--rules.alert.resend-delay")

    def argv(port: int) -> list[str]:
        args = [
            exe,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        if external_url:
            args.insert(4, f"--web.external-url=http://127.0.0.1:{port}")
        if resend:
            args.append(f"--rules.alert.resend-delay={resend_delay}")
        return args

    return argv


def _require(path: str) -> str:
    """The binary's path; a missing one is an error, not a skip, so a CI image without it fails loudly."""
    exe = binary(path)
    if exe is None:
        raise ServiceError(
            f"{path} is missing: install it with `apt-get install prometheus prometheus-alertmanager`"
            " (or point SELFHEAL_PROMETHEUS_BIN / SELFHEAL_ALERTMANAGER_BIN at the binaries)"
        )
    return exe


def _host_port(target: str) -> str:
    """`http://127.0.0.1:9100/metrics` or `127.0.0.1:9100` → `127.0.0.1:9100`."""
    return target.split("://", 1)[-1].split("/", 1)[0]


@contextmanager
def prometheus_server(
    workdir: Path,
    scrape_targets: list[str],
    rules_yaml: str | None = None,
    alertmanager_url: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> Iterator[str]:
    """A Prometheus scraping `scrape_targets` (job `targets`), optionally with rules and an Alertmanager;
    yields its URL."""
    server = prometheus_process(
        workdir, scrape_targets, rules_yaml, alertmanager_url, scrape_interval, evaluation_interval
    )
    try:
        yield server.url
    finally:
        server.stop()


def prometheus_process(
    workdir: Path,
    scrape_targets: list[str],
    rules_yaml: str | None = None,
    alertmanager_url: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> RestartableServer:
    """`prometheus_server` as a process the caller stops, and may kill and start again."""
    exe = _require(PROMETHEUS_BIN)
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": [
            {
                "job_name": "targets",
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": [_host_port(t) for t in scrape_targets]}],
            }
        ],
    }
    if rules_yaml is not None:
        (workdir / "rules.yml").write_text(rules_yaml)
        config["rule_files"] = [str(workdir / "rules.yml")]
    if alertmanager_url is not None:
        config["alerting"] = {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [_host_port(alertmanager_url)]}]}
            ]
        }
    argv = _prometheus_argv(exe, workdir, config, resend_delay="1s", external_url=False)
    return RestartableServer("prometheus", argv, workdir)


def _alertmanager_config(
    workdir: Path, webhook_url: str | None, token: str | None, group_by: list[str] | None = None
) -> Path:
    """Route everything to `webhook_url` (Bearer `token`), or to nowhere; group timings of a
    second or less, so a posted alert reaches the webhook promptly."""
    workdir.mkdir(parents=True, exist_ok=True)
    receiver: dict[str, Any] = {"name": "selfheal"}
    if webhook_url is not None:
        webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True, "max_alerts": 0}
        if token is not None:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
        receiver["webhook_configs"] = [webhook]
    config = {
        "route": {
            "receiver": "selfheal",
            "group_by": group_by or ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [receiver],
    }
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def alertmanager_server(
    workdir: Path, webhook_url: str | None = None, token: str | None = None
) -> Iterator[str]:
    """An Alertmanager routing everything to `webhook_url` (Bearer `token`), or to nowhere; yields its URL."""
    server = alertmanager_process(workdir, webhook_url, token)
    try:
        yield server.url
    finally:
        server.stop()


def alertmanager_process(
    workdir: Path,
    webhook_url: str | None = None,
    token: str | None = None,
    group_by: list[str] | None = None,
) -> RestartableServer:
    """`alertmanager_server` as a process the caller stops, and may kill and start again;
    `group_by` defaults to `[alertname]`."""
    exe = _require(ALERTMANAGER_BIN)
    config = _alertmanager_config(workdir, webhook_url, token, group_by)

    def argv(port: int) -> list[str]:
        return [
            exe,
            f"--config.file={config}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single, private instance
            "--log.level=warn",
        ]

    return RestartableServer("alertmanager", argv, workdir)


@contextmanager
def alertmanager_pair(workdir: Path, webhook_url: str, token: str | None = None) -> Iterator[list[str]]:
    """Two Alertmanagers clustered by gossip (`--cluster.peer`), as an HA pair runs; yields both URLs.

    Prometheus sends every alert to both. They share the notification log, so the second usually
    skips what the first sent; with a short `--cluster.peer-timeout` both often send, which is
    what the receiver must absorb anyway (a partition, a slow peer).
    """
    exe = _require(ALERTMANAGER_BIN)
    config = _alertmanager_config(workdir, webhook_url, token)
    gossip = [free_port(), free_port()]
    servers: list[Server] = []

    def argv_for(i: int) -> Callable[[int], list[str]]:
        def argv(port: int) -> list[str]:
            peer = [f"--cluster.peer=127.0.0.1:{gossip[0]}"] if i == 1 else []
            return [
                exe,
                f"--config.file={config}",
                f"--storage.path={workdir / f'am-data-{i}'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--cluster.listen-address=127.0.0.1:{gossip[i]}",
                f"--cluster.advertise-address=127.0.0.1:{gossip[i]}",
                *peer,
                "--cluster.peer-timeout=2s",
                "--cluster.gossip-interval=50ms",
                "--cluster.pushpull-interval=2s",
                "--log.level=warn",
            ]

        return argv

    try:
        for i in range(2):
            servers.append(_start(f"alertmanager-{i}", argv_for(i), workdir))
        yield [s.url for s in servers]
    finally:
        for server in servers:
            server.stop()
