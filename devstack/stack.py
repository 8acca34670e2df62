"""`selfheal dev`: Temporal dev server, worker and API as one supervised process group.

Children run in their own sessions so a Ctrl-C reaches only us; we then stop them in order
(API, worker, Temporal). A child that dies is restarted with backoff; the SQLite file in the
data dir keeps incidents across restarts.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from devstack.temporal_server import DevServerError, TemporalDevServer, port_open

console = Console(stderr=True)


def _saved_secret(path: Path, env: str, prefix: str) -> str:
    """`env` if set, else the token saved at `path`, else a new one; saved with mode 0600. New
    tokens carry `prefix` (`shw_`, `shu_`) so the redactor knows them wherever they are printed."""
    token = os.environ.get(env) or (path.read_text().strip() if path.exists() else "")
    if not token:
        token = prefix + secrets.token_urlsafe(32)
    write_secret(path, token)
    return token


def write_secret(path: Path, value: str) -> None:
    """Write a token file readable by its owner only (0600, also when it already existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)


def ensure_token(data_dir: Path) -> str:
    """Alertmanager's webhook token (it posts alerts, nothing else): SELFHEAL_WEBHOOK_TOKEN, or
    `<data_dir>/webhook-token`, or a new one."""
    return _saved_secret(data_dir / "webhook-token", "SELFHEAL_WEBHOOK_TOKEN", "shw_")


#: The local approver `selfheal dev` creates, whose token the CLI reads from `<data_dir>/api-token`.
DEV_USER = "dev"


def ensure_api_token(data_dir: Path) -> str:
    """The local approver's API token: SELFHEAL_API_TOKEN, or `<data_dir>/api-token`, or a new one."""
    return _saved_secret(data_dir / "api-token", "SELFHEAL_API_TOKEN", "shu_")


def dev_user_env(api_token: str) -> dict[str, str]:
    """The environment that adds the local approver to `auth.users` (merged with the config's)."""
    prefix = f"SELFHEAL_AUTH__USERS__{DEV_USER.upper()}__"
    return {
        prefix + "ROLES": '["approver"]',
        prefix + "TOKEN_SHA256": hashlib.sha256(api_token.encode()).hexdigest(),
    }


class AsCaller(httpx.Auth):
    """Credentials as a deployment holds them: Alertmanager's webhook token on `POST /api/v1/alerts`,
    a person's API token everywhere else (the webhook token may post alerts and nothing more)."""

    def __init__(self, webhook_token: str, user_token: str) -> None:
        self.webhook_token = webhook_token
        self.user_token = user_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        alerts = request.method == "POST" and request.url.path == "/api/v1/alerts"
        request.headers["Authorization"] = f"Bearer {self.webhook_token if alerts else self.user_token}"
        yield request


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: list[float] = field(default_factory=list)

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


class DevStack:
    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 8080,
        temporal_port: int = 7233,
        ui_port: int = 8233,
        config: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.token = ensure_token(self.data_dir)
        self.api_token = ensure_api_token(self.data_dir)
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.temporal = TemporalDevServer(
            self.data_dir / "temporal.db", port=temporal_port, ui_port=ui_port, log_file=logs / "temporal.log"
        )
        env = dict(os.environ)
        env.update(
            SELFHEAL_ENV="dev",
            SELFHEAL_DATA_DIR=str(self.data_dir),
            SELFHEAL_PORT=str(port),
            SELFHEAL_WEBHOOK_TOKEN=self.token,
            SELFHEAL_TEMPORAL__ADDRESS=self.temporal.address,
            SELFHEAL_TEMPORAL__UI_URL=self.temporal.ui_url,
        )
        env.update(dev_user_env(self.api_token))
        env.pop("SELFHEAL_API_TOKEN", None)  # the CLI's, not a setting
        if config:
            env["SELFHEAL_CONFIG"] = str(config.resolve())
        exe = [sys.executable, "-m", "selfheal"]
        self.children = [
            Child("worker", [*exe, "worker"], env, logs / "worker.log"),
            Child("api", [*exe, "api"], env, logs / "api.log"),
        ]
        self._stopping = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if port_open("127.0.0.1", self.port):
            raise DevServerError(f"port {self.port} is already in use (choose another with --port)")
        self.temporal.start()
        for child in self.children:
            child.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for_api(self.children, self.api_url, timeout, self.data_dir / "logs")

    def supervise(self) -> None:
        """Restart crashed children with backoff until asked to stop."""
        while not self._stopping:
            now = time.monotonic()
            if not self.temporal.alive():
                console.print("[yellow]temporal server exited; restarting[/]")
                self.temporal.start()
            for child in self.children:
                if child.alive() or self._stopping:
                    continue
                if child.next_start == 0.0:
                    child.restarts += 1
                    delay = min(30.0, 2.0 ** min(child.restarts, 5))
                    child.next_start = now + delay
                    console.print(
                        f"[yellow]{child.name} exited ({child.proc.returncode if child.proc else '?'});"
                        f" restarting in {delay:.0f}s; see {child.log}[/]"
                    )
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.start()
            time.sleep(0.5)

    def stop(self) -> None:
        self._stopping = True
        for child in reversed(self.children):
            child.stop()
        self.temporal.stop()


def wait_for_api(children: list[Child], api_url: str, timeout: float, logs: Path, who: str = "") -> None:
    """Until the API's /readyz answers 200; a child exiting first is an error naming its log.
    `who` prefixes the names in errors (e.g. "selfheal " where other processes run beside)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise DevServerError(f"{who}{child.name} exited during start-up; see {child.log}")
        try:
            if httpx.get(f"{api_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DevServerError(f"{who}API not ready within {timeout:.0f}s; see {logs}")


def run_dev(data_dir: Path, port: int, temporal_port: int, ui_port: int, config: Path | None) -> int:
    stack = DevStack(data_dir, port=port, temporal_port=temporal_port, ui_port=ui_port, config=config)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        with console.status("starting Temporal dev server, worker and API…"):
            stack.start()
            stack.wait_ready()
        console.print(
            "[bold green]selfheal dev is up[/]\n"
            f"  API + webhook   {stack.api_url}/api/v1/alerts\n"
            f"  OpenAPI         {stack.api_url}/docs\n"
            f"  Temporal UI     {stack.temporal.ui_url}\n"
            f"  Temporal gRPC   {stack.temporal.address}\n"
            f"  webhook token   {stack.token}  (saved in {stack.data_dir / 'webhook-token'}; Alertmanager's:"
            " it posts alerts, nothing else)\n"
            f"  API token       saved in {stack.data_dir / 'api-token'} (user {DEV_USER!r}, approver;"
            " the CLI reads it)\n"
            f"  data + logs     {stack.data_dir}\n"
            "Ctrl-C stops everything.",
            soft_wrap=True,
        )
        stack.supervise()
    except KeyboardInterrupt:
        console.print("stopping…")
    except DevServerError as err:
        console.print(f"[red]error:[/] {err}")
        stack.stop()
        return 1
    stack.stop()
    console.print("stopped")
    return 0
