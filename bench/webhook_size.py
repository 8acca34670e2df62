"""How big Alertmanager's webhook bodies get in a big outage, measured on a real Alertmanager.

    .venv/bin/python -m bench.webhook_size [--quick] [--sizes 1000 5000 10000]

A node or zone outage grouped by alertname puts every affected pod's alert into one group. This
posts N alerts shaped exactly as kube-prometheus' KubePodNotReady labels and annotates them (its
runbook URL, description and the URL-encoded expression in `generatorURL`) to a real
`prometheus-alertmanager`, and records the size of the one notification Alertmanager then sends
(`max_alerts: 0`, i.e. all alerts). The figures set `max_body_bytes`' default (README "Limits").
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx

from bench import common
from demo.observability import alertmanager_server

NAME = "webhook_size"

#: kubernetes-mixin's KubePodNotReady expression, as Prometheus puts it into `generatorURL`.
_EXPR = (
    "sum by (namespace, pod, cluster) (max by (namespace, pod, cluster) "
    '(kube_pod_status_phase{job="kube-state-metrics",namespace=~".*",phase=~"Pending|Unknown|Failed"}) '
    "* on (namespace, pod, cluster) group_left (owner_kind) topk by (namespace, pod, cluster) "
    '(1, max by (namespace, pod, owner_kind, cluster) (kube_pod_owner{owner_kind!="Job"}))) > 0'
)
GENERATOR_URL = "http://prometheus-k8s-0:9090/graph?g0.expr=" + quote_plus(_EXPR) + "&g0.tab=1"


def kube_alert(i: int) -> dict[str, Any]:
    """One KubePodNotReady alert as kube-prometheus (prometheus-operator) sends it to Alertmanager."""
    namespace = f"team-{i % 40:02d}"
    pod = f"api-{i:05d}-7d9c8b6f5d-{i * 7919 % 100000:05x}"
    return {
        "labels": {
            "alertname": "KubePodNotReady",
            "namespace": namespace,
            "pod": pod,
            "prometheus": "monitoring/k8s",
            "severity": "warning",
        },
        "annotations": {
            "description": f"Pod {namespace}/{pod} has been in a non-ready state for longer than 15 minutes"
            " on cluster .",
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodnotready",
            "summary": "Pod has been in a non-ready state for more than 15 minutes.",
        },
        "generatorURL": GENERATOR_URL,
    }


class _Receiver(ThreadingHTTPServer):
    """A webhook receiver that keeps each body's size and alert count."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[tuple[int, int, int]] = []  # (bytes, alerts, truncatedAlerts)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        doc = json.loads(raw)
        with self.server.lock:
            self.server.bodies.append((len(raw), len(doc["alerts"]), int(doc.get("truncatedAlerts", 0))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def measure(n: int, workdir: Path) -> dict[str, Any]:
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with alertmanager_server(workdir, receiver.url) as am:
            alerts = [kube_alert(i) for i in range(n)]
            httpx.post(f"{am}/api/v2/alerts", json=alerts, timeout=120).raise_for_status()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with receiver.lock:
                    full = [b for b in receiver.bodies if b[1] == n]
                if full:
                    size, _, truncated = full[0]
                    return {
                        "alerts": n,
                        "bytes": size,
                        "bytes_per_alert": round(size / n),
                        "truncated": truncated,
                    }
                time.sleep(0.2)
            raise RuntimeError(f"Alertmanager sent no notification with all {n} alerts in 120 s")
    finally:
        receiver.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    args = p.parse_args(argv)
    sizes = args.sizes or ([100, 1000] if args.quick else [1000, 5000, 10000])
    started = time.monotonic()
    machine = common.machine_facts()
    rows = []
    with tempfile.TemporaryDirectory(prefix="selfheal-bench-") as tmp:
        for n in sizes:
            rows.append(measure(n, Path(tmp) / f"am-{n}"))
    common.print_table(
        "Alertmanager webhook body for one group of N KubePodNotReady alerts",
        ["alerts", "bytes", "MiB", "bytes/alert"],
        [[r["alerts"], r["bytes"], f"{r['bytes'] / 2**20:.2f}", r["bytes_per_alert"]] for r in rows],
    )
    largest = max(rows, key=lambda r: r["alerts"])
    common.write_result(
        NAME,
        Path(args.results_dir),
        quick=args.quick,
        started=started,
        params={"sizes": sizes, "alert": "KubePodNotReady (kube-prometheus)"},
        figures={"bodies": rows},
        headline={f"MiB at {largest['alerts']} alerts": round(largest["bytes"] / 2**20, 2)},
        checks={"every size notified in full": all(r["truncated"] == 0 for r in rows)},
        machine=machine,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
