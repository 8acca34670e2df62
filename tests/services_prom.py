"""Real Prometheus and Alertmanager for tests, plus a metrics target whose values a test sets.

The binaries come from the Debian packages (`apt-get install prometheus prometheus-alertmanager`);
CI installs them. Each server runs as our own child on a free 127.0.0.1 port with its config and
storage in the test's directory, never as the system service. A missing binary is an error, not a
skip, so a CI image without them fails loudly instead of silently testing less.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from demo.observability import Server
from devstack.temporal_server import free_port

PROMETHEUS_BIN = os.environ.get("SELFHEAL_PROMETHEUS_BIN", "/usr/bin/prometheus")
ALERTMANAGER_BIN = os.environ.get("SELFHEAL_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
_START_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind
_READY_TIMEOUT = 30.0


class ServiceError(RuntimeError):
    pass


def _binary(path: str) -> str:
    found = shutil.which(path)
    if found is None:
        raise ServiceError(
            f"{path} is missing: install it with `apt-get install prometheus prometheus-alertmanager`"
            " (or point SELFHEAL_PROMETHEUS_BIN / SELFHEAL_ALERTMANAGER_BIN at the binaries)"
        )
    return found


@cache
def _supports_flag(binary: str, flag: str) -> bool:
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30, check=False)
    return flag in out.stdout + out.stderr


@contextmanager
def _run(name: str, argv_for_port: Any, workdir: Path) -> Iterator[str]:
    last = ""
    for attempt in range(_START_ATTEMPTS):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = Server(name, argv_for_port(port), url, workdir / f"{name}-{attempt}.log")
        try:
            if server.wait_ready(_READY_TIMEOUT):
                yield url
                return
            if server.proc.poll() is None:  # alive but never ready: another port will not help
                raise ServiceError(
                    f"{name} not ready at {url} within {_READY_TIMEOUT:.0f}s; see {server.log_file}"
                )
            last = server.log_tail()
        finally:
            server.stop()
    raise ServiceError(f"{name} did not start after {_START_ATTEMPTS} attempts; last log:\n{last}")


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
    """A Prometheus scraping `scrape_targets` (job `targets`), optionally with rules and an Alertmanager."""
    binary = _binary(PROMETHEUS_BIN)
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
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    storage = workdir / "data"

    def argv(port: int) -> list[str]:
        args = [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        if _supports_flag(binary, "--rules.alert.resend-delay"):
            args.append("--rules.alert.resend-delay=1s")
        return args

    with _run("prometheus", argv, workdir) as url:
        yield url


@contextmanager
def alertmanager_server(
    workdir: Path, webhook_url: str | None = None, token: str | None = None
) -> Iterator[str]:
    """An Alertmanager routing everything to `webhook_url` (Bearer `token`), or to nowhere.

    Group timings are a second or less, so a posted alert reaches the webhook promptly.
    """
    binary = _binary(ALERTMANAGER_BIN)
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
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [receiver],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single, private instance
            "--log.level=warn",
        ]

    with _run("alertmanager", argv, workdir) as url:
        yield url


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class MetricTarget:
    """An HTTP server on 127.0.0.1 serving `/metrics` with gauges the test sets.

    `target.set("demo_error_ratio", 0.2)` changes what the next scrape sees.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.scrapes = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = target.render().encode()
                with target._lock:
                    target.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = float(value)

    def render(self) -> str:
        with self._lock:
            items = sorted(self._values.items())
        lines: list[str] = []
        typed: set[str] = set()
        for (name, labels), value in items:
            if name not in typed:
                lines.append(f"# TYPE {name} gauge")
                typed.add(name)
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(
                f"{name}{{{label_text}}} {_format_value(value)}"
                if labels
                else f"{name} {_format_value(value)}"
            )
        return "\n".join(lines) + "\n"

    def start(self) -> MetricTarget:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricTarget:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
