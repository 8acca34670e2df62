"""`selfheal dev` as a user runs it: a subprocess that supervises Temporal, the worker and the API.

Observed only from outside: its printed banner, the token file, the HTTP API, the CLI, exit codes,
listening ports and /proc. Children run in their own sessions, so clean-up also hunts down every
process that refers to the test's data dir.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import AsCaller
from devstack.temporal_server import free_port, port_open
from tests.support.payloads import simple

pytestmark = pytest.mark.timeout(180)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    env.update(extra)
    return env


def _proc_read(pid: int, name: str) -> bytes:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except OSError:
        return b""


def processes_using(data_dir: Path) -> dict[int, list[str]]:
    """Live processes whose command line or SELFHEAL_DATA_DIR mentions `data_dir`: pid → argv."""
    needle = str(data_dir).encode()
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        cmdline = _proc_read(pid, "cmdline")
        if not cmdline:  # zombies and kernel threads
            continue
        environ = _proc_read(pid, "environ").split(b"\0")
        if needle in cmdline or b"SELFHEAL_DATA_DIR=" + needle in environ:
            found[pid] = [a.decode(errors="replace") for a in cmdline.rstrip(b"\0").split(b"\0")]
    return found


def worker_pids(data_dir: Path) -> set[int]:
    return {
        pid for pid, argv in processes_using(data_dir).items() if argv[-3:] == ["-m", "selfheal", "worker"]
    }


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


class Dev:
    """One `python -m selfheal dev` subprocess with its own free ports."""

    def __init__(self, data_dir: Path, log: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        argv = [
            sys.executable,
            "-m",
            "selfheal",
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
            "--temporal-port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
        ]
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> str:
        """Poll /readyz until 200, then until the banner is printed; returns the output."""

        def ready() -> bool:
            assert self.proc.poll() is None, f"dev exited {self.proc.returncode}:\n{self.output()}"
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "GET /readyz == 200")
        return str(wait_until(lambda: "Ctrl-C" in self.output() and self.output(), 10, "banner"))

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def caller(self) -> httpx.Client:
        """As the deployment's callers: Alertmanager with the webhook token, the local approver
        `dev` with the API token, both as `selfheal dev` saved them."""
        auth = AsCaller(read_token(self.data_dir), read_token(self.data_dir, "api-token"))
        return httpx.Client(base_url=self.url, auth=auth, timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dev did not exit within {timeout}s after SIGTERM:\n{self.output()}"
            ) from None

    def assert_nothing_left(self) -> None:
        for port in (self.port, self.temporal_port, self.ui_port):
            assert not port_open("127.0.0.1", port), f"port {port} still open after stop"
        left = processes_using(self.data_dir)
        assert not left, f"processes left behind: {left}"

    def kill_all(self) -> None:
        """Clean-up whatever happened: the dev group, then every straggler that uses the data dir."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        for pid in processes_using(self.data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def dev_factory(tmp_path: Path) -> Iterator[Callable[..., Dev]]:
    started: list[Dev] = []

    def start(data_dir: Path, **env: str) -> Dev:
        dev = Dev(data_dir, tmp_path / f"dev-{len(started)}.log", clean_env(**env))
        started.append(dev)
        return dev

    try:
        yield start
    finally:
        for dev in started:
            dev.kill_all()
        # Shown by pytest only when the test failed.
        for dev in started:
            print(f"--- {dev.log.name}\n{dev.output()[-4000:]}")
        for log in sorted({p for dev in started for p in (dev.data_dir / "logs").glob("*.log")}):
            print(f"--- {log}\n{log.read_text(errors='replace')[-4000:]}")


def post_alert(http: httpx.Client) -> str:
    # An alertname no playbook knows: this is about the stack, not remediation.
    resp = http.post("/api/v1/alerts", json=simple(alertname="SelfhealDevStackProbe"))
    assert resp.status_code == 202, resp.text
    incident_id: str = resp.json()["incident_id"]
    return incident_id


def wait_stage(http: httpx.Client, incident_id: str, stage: str, timeout: float = 30) -> dict[str, Any]:
    last: list[Any] = [None]

    def reached() -> dict[str, Any] | None:
        resp = http.get(f"/api/v1/incidents/{incident_id}")
        last[0] = (resp.status_code, resp.text[:2000])
        if resp.status_code == 200 and resp.json()["stage"] == stage:
            data: dict[str, Any] = resp.json()
            return data
        return None

    try:
        result: dict[str, Any] = wait_until(reached, timeout, f"incident {incident_id} in stage {stage}")
    except AssertionError as err:
        raise AssertionError(f"{err}; last answer: {last[0]}") from None
    return result


def read_token(data_dir: Path, name: str = "webhook-token") -> str:
    path = data_dir / name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    return path.read_text().strip()


def test_dev_stack_lifecycle(tmp_path: Path, dev_factory: Callable[..., Dev]) -> None:
    """Banner and token files; alert → escalation; worker crash → restart; SIGTERM → clean; state kept;
    the CLI decides as the local approver `dev`."""
    data_dir = (tmp_path / "data").resolve()

    dev = dev_factory(data_dir)
    out = dev.wait_ready()
    token = read_token(data_dir)
    api_token = read_token(data_dir, "api-token")
    assert len(token) >= 32 and len(api_token) >= 32 and api_token != token
    assert f"{dev.url}/api/v1/alerts" in out
    assert token in out and str(data_dir / "api-token") in out and api_token not in out
    with dev.client("wrong-" + token) as bad:
        assert bad.get("/api/v1/incidents").status_code == 401
    with dev.client(token) as webhook:
        assert webhook.get("/api/v1/incidents").status_code == 403, "the webhook token only posts alerts"

    with dev.caller() as http:
        first = post_alert(http)
        first_view = wait_stage(http, first, "awaiting_decision")
        assert first_view["ticket"]["key"]

        # The supervisor replaces a worker that dies, and new incidents still get ticketed.
        (old_worker,) = wait_until(lambda: worker_pids(data_dir), 10, "a worker process")
        os.kill(old_worker, signal.SIGKILL)
        new_workers = wait_until(lambda: worker_pids(data_dir) - {old_worker}, 30, "a restarted worker")
        assert old_worker not in worker_pids(data_dir) and len(new_workers) == 1
        second = post_alert(http)
        # Its turn comes from the control workflow, whose next task Temporal first offers to the
        # killed worker's sticky queue for `temporal.sticky_timeout_seconds` (30).
        second_view = wait_stage(http, second, "awaiting_decision", timeout=90)
        assert second_view["ticket"]["key"] not in (None, first_view["ticket"]["key"])
        assert dev.proc.poll() is None

    assert dev.terminate() == 0
    dev.assert_nothing_left()

    again = dev_factory(data_dir)
    out = again.wait_ready()
    assert read_token(data_dir) == token and token in out
    assert read_token(data_dir, "api-token") == api_token
    with again.caller() as http:
        for view in (first_view, second_view):
            now = wait_stage(http, view["id"], "awaiting_decision", timeout=10)
            assert now["id"] == view["id"]
            assert now["ticket"]["key"] == view["ticket"]["key"]

        approved = subprocess.run(
            [sys.executable, "-m", "selfheal", "approve", first],
            env=clean_env(SELFHEAL_URL=again.url, SELFHEAL_DATA_DIR=str(data_dir)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert approved.returncode == 0, approved.stderr
        closed = wait_stage(http, first, "closed")
        assert closed["outcome"] == "approved"
        assert closed["decision"]["by"] == "dev"
        assert http.get(f"/api/v1/incidents/{second}").json()["stage"] == "awaiting_decision"

    assert again.terminate() == 0
    again.assert_nothing_left()


def test_dev_honours_webhook_token_from_env(tmp_path: Path, dev_factory: Callable[..., Dev]) -> None:
    data_dir = (tmp_path / "data").resolve()
    data_dir.mkdir()
    (data_dir / "webhook-token").write_text("stale-token\n")
    token = "env-token-" + uuid.uuid4().hex[:16]
    dev = dev_factory(data_dir, SELFHEAL_WEBHOOK_TOKEN=token)
    out = dev.wait_ready()
    assert token in out
    assert read_token(data_dir) == token
    with dev.client(token) as http:
        assert http.post("/api/v1/alerts", json={}).status_code == 422, "authenticated, then validated"
    with dev.client("stale-token") as http:
        assert http.post("/api/v1/alerts", json={}).status_code == 401
    assert dev.terminate() == 0
    dev.assert_nothing_left()
