"""The demo shop: an HTTP service whose behaviour follows the configuration deployed from git.

Routes (`X-User` names the caller): `GET /api/products`, `POST /api/cart`, `POST /api/checkout`,
`GET /api/recommendations`. Every route borrows a connection from a bounded database pool;
checkout then calls a (simulated) payment provider with the configured timeout; products
serialises `products.page_size` items; recommendations use the new model when the feature flag
`new_recommendations` is on, and that model is broken. So each config value is a real fault:

- `payments.timeout_ms` below the provider's latency → checkout answers 504;
- `db.pool.size` below the load's concurrency → requests time out waiting for a connection (503);
- `flags.new_recommendations.enabled: true` → recommendations answer 500;
- `products.page_size` in the thousands → product pages get slow (no playbook knows this one).

Deploys: `POST /-/reload` reads `main` of the bare config remote and applies it (the CD step a
playbook's deploy calls after `git push`); `GET /-/deploys` lists what was applied, so tests can
count deploys. Metrics on `/metrics` (prometheus_client). Errors are logged one line each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONFIG_FILE = "services/{service}/config/app.yaml"
FLAGS_FILE = "flags/{service}.yaml"
#: The simulated costs: a query holds a connection this long; the payment provider answers this fast.
DB_QUERY_SECONDS = 0.04
PAYMENT_LATENCY_MS = 40
SERIALISE_SECONDS_PER_ITEM = 0.0004
#: Users seen (or failing) within this window count as active (affected).
USER_WINDOW_SECONDS = 30.0
SLOW_SECONDS = 0.3
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


class HttpError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Pool:
    """A resizable connection pool: at most `size` borrowers, waiting at most `timeout` seconds."""

    def __init__(self, size: int, timeout: float) -> None:
        self._cond = threading.Condition()
        self.size = size
        self.timeout = timeout
        self.in_use = 0

    def resize(self, size: int, timeout: float) -> None:
        with self._cond:
            self.size, self.timeout = size, timeout
            self._cond.notify_all()

    def acquire(self) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.in_use < self.size, self.timeout) and self._take()

    def _take(self) -> bool:
        self.in_use += 1
        return True

    def release(self) -> None:
        with self._cond:
            self.in_use -= 1
            self._cond.notify()


@dataclass
class Deployed:
    sha: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, default: Any) -> Any:
        node: Any = self.config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def flag(self, name: str) -> bool:
        entry = (self.flags.get("flags") or {}).get(name) or {}
        return bool(entry.get("enabled", False))


class Shop:
    def __init__(self, service: str, remote: Path, log_file: Path | None = None) -> None:
        self.service = service
        self.remote = remote
        self.log_file = log_file
        self.deployed = Deployed()
        self.deploys: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._failed: dict[str, float] = {}
        self.pool = Pool(10, 0.1)
        reg = self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "Requests by route and status code.",
            ["service", "route", "code", "feature_flag"], registry=reg,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds", "Request latency by route.",
            ["service", "route"], buckets=BUCKETS, registry=reg,
        )  # fmt: skip
        self.errors = Counter(
            "shop_errors",
            "Failed requests by route and reason.",
            ["service", "route", "reason"],
            registry=reg,
        )
        self.pool_timeouts = Counter(
            "shop_db_pool_timeouts", "Requests that gave up waiting for a connection.",
            ["service", "pool"], registry=reg,
        )  # fmt: skip
        Gauge("shop_db_pool_size", "Configured pool size.", ["service", "pool"], registry=reg).labels(
            service, "primary"
        ).set_function(lambda: self.pool.size)
        Gauge("shop_db_pool_in_use", "Connections in use.", ["service", "pool"], registry=reg).labels(
            service, "primary"
        ).set_function(lambda: self.pool.in_use)
        Gauge("shop_active_users", "Users seen in the last 30s.", ["service"], registry=reg).labels(
            service
        ).set_function(lambda: self._count(self._seen))
        Gauge(
            "shop_affected_users", "Users with a failed request in the last 30s.", ["service"], registry=reg
        ).labels(service).set_function(lambda: self._count(self._failed))
        self.info = Gauge("shop_config_info", "The deployed config commit.", ["service", "sha"], registry=reg)

    def _count(self, seen: dict[str, float]) -> float:
        cutoff = time.monotonic() - USER_WINDOW_SECONDS
        with self._lock:
            return float(sum(1 for t in seen.values() if t >= cutoff))

    # --- deploy -----------------------------------------------------------------------------------

    def _show(self, rev: str, path: str) -> str | None:
        res = subprocess.run(
            ["git", "--git-dir", str(self.remote), "show", f"{rev}:{path}"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return res.stdout if res.returncode == 0 else None

    def reload(self, source: str) -> dict[str, Any]:
        """Apply `main` of the config remote; a reload of what is already running changes nothing."""
        res = subprocess.run(
            ["git", "--git-dir", str(self.remote), "rev-parse", "main"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        sha = res.stdout.strip()
        with self._lock:
            if sha == self.deployed.sha:
                return {"sha": sha, "changed": False}
        config = yaml.safe_load(self._show(sha, CONFIG_FILE.format(service=self.service)) or "{}") or {}
        flags = yaml.safe_load(self._show(sha, FLAGS_FILE.format(service=self.service)) or "{}") or {}
        new = Deployed(sha=sha, config=config, flags=flags)
        self.pool.resize(int(new.get("db.pool.size", 10)), float(new.get("db.pool.timeout_ms", 100)) / 1000)
        with self._lock:
            old = self.deployed.sha
            self.deployed = new
            self.deploys.append({"sha": sha, "at": datetime.now(UTC).isoformat(), "source": source})
        if old:
            self.info.remove(self.service, old)
        self.info.labels(self.service, sha).set(1)
        self._rotate()
        self.log(f"INFO deployed config {sha[:12]} (by {source})")
        return {"sha": sha, "changed": True}

    def _rotate(self) -> None:
        """Each deploy starts a fresh log, as a new pod would: `tail` shows this deploy's lines."""
        if self.log_file is not None and self.log_file.exists():
            with self._lock:
                self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))

    def log(self, line: str) -> None:
        if self.log_file is None:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock, open(self.log_file, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {line}\n")

    # --- routes -----------------------------------------------------------------------------------

    def _db(self, seconds: float = DB_QUERY_SECONDS) -> None:
        if not self.pool.acquire():
            self.pool_timeouts.labels(self.service, "primary").inc()
            raise HttpError(503, "db_pool_timeout")
        try:
            time.sleep(seconds)
        finally:
            self.pool.release()

    def products(self, d: Deployed) -> dict[str, Any]:
        self._db()
        size = int(d.get("products.page_size", 20))
        time.sleep(size * SERIALISE_SECONDS_PER_ITEM)
        return {"items": size}

    def cart(self, d: Deployed) -> dict[str, Any]:
        self._db()
        return {"ok": True}

    def checkout(self, d: Deployed) -> dict[str, Any]:
        self._db()
        timeout_ms = int(d.get("payments.timeout_ms", 800))
        time.sleep(min(timeout_ms, PAYMENT_LATENCY_MS) / 1000)
        if timeout_ms < PAYMENT_LATENCY_MS:
            raise HttpError(504, "payment_timeout")
        return {"paid": True}

    def recommendations(self, d: Deployed) -> dict[str, Any]:
        self._db()
        if d.flag("new_recommendations"):
            raise HttpError(500, "model_error")
        return {"items": 4}

    def handle(self, method: str, route: str, user: str) -> tuple[int, dict[str, Any]]:
        routes: dict[tuple[str, str], Callable[[Deployed], dict[str, Any]]] = {
            ("GET", "/api/products"): self.products,
            ("POST", "/api/cart"): self.cart,
            ("POST", "/api/checkout"): self.checkout,
            ("GET", "/api/recommendations"): self.recommendations,
        }
        fn = routes.get((method, route))
        if fn is None:
            return 404, {"error": "not found"}
        with self._lock:
            deployed = self.deployed
            self._seen[user] = time.monotonic()
        flag = (
            "new_recommendations"
            if route == "/api/recommendations" and deployed.flag("new_recommendations")
            else "none"
        )
        started = time.perf_counter()
        try:
            body, code = fn(deployed), 200
        except HttpError as err:
            body, code = {"error": err.reason}, err.code
            self.errors.labels(self.service, route, err.reason).inc()
            with self._lock:
                self._failed[user] = time.monotonic()
            self.log(f"ERROR {method} {route} user={user} status={code} reason={err.reason}")
        took = time.perf_counter() - started
        if code == 200 and took > SLOW_SECONDS:
            self.log(f"WARN {method} {route} user={user} took {took * 1000:.0f}ms (slow)")
        self.latency.labels(self.service, route).observe(took)
        self.requests.labels(self.service, route, str(code), flag).inc()
        return code, body


def serve(shop: Shop, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 65536))
            if method == "GET" and path == "/metrics":
                self._send(200, generate_latest(shop.registry), "text/plain; version=0.0.4")
            elif method == "GET" and path == "/-/deploys":
                with shop._lock:
                    self._send(200, json.dumps({"deploys": shop.deploys}).encode())
            elif method == "GET" and path == "/-/healthy":
                self._send(200, json.dumps({"sha": shop.deployed.sha}).encode())
            elif method == "POST" and path == "/-/reload":
                try:
                    result = shop.reload(self.headers.get("User-Agent", "unknown")[:80])
                except (subprocess.SubprocessError, OSError, ValueError, yaml.YAMLError) as err:
                    self._send(500, json.dumps({"error": str(err)[:300]}).encode())
                    return
                self._send(200, json.dumps(result).encode())
            else:
                user = (self.headers.get("X-User") or "anonymous")[:40]
                code, body = shop.handle(method, path, user)
                self._send(code, json.dumps(body).encode())

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.shop", description=__doc__.splitlines()[0])
    parser.add_argument("--remote", type=Path, required=True, help="bare git repository with the config")
    parser.add_argument("--service", default="shop")
    parser.add_argument("--port-file", type=Path, required=True, help="written with the bound port")
    parser.add_argument("--log-file", type=Path)
    args = parser.parse_args(argv)
    shop = Shop(args.service, args.remote, args.log_file)
    shop.reload("startup")
    server = serve(shop)
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(args.port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
