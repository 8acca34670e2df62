"""run_command with real subprocesses: no shell, no leaked env, timeouts, limits and the sandbox."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import commands
from connectors.commands import CommandError, run_command

#: The real interpreter, not the venv's symlink: the sandbox hides /tmp, where a CI clone may live.
PY = os.path.realpath(sys.executable)


def _bwrap_or_skip() -> None:
    usable, why = commands.bwrap_available()
    print(f"bwrap probe: usable={usable}: {why}")
    if not usable:
        pytest.skip(f"bwrap unusable on this machine: {why}")


def _gone(pid: int) -> bool:
    """True when the process no longer runs (absent, or a zombie waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    return wt


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 outside any sandbox; yields its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_argv_is_passed_literally_never_to_a_shell(worktree: Path) -> None:
    hostile = "; rm -rf / $(touch pwned) `touch pwned2` && echo owned"
    result = run_command(["printf", "%s", hostile], cwd=worktree, env={}, timeout=10, sandbox=False)
    assert result.ok
    assert result.stdout == hostile
    assert result.sandboxed == "none"
    assert list(worktree.iterdir()) == []


def test_worker_environment_does_not_leak(worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_TEST_SECRET", "hunter2")
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    result = run_command([PY, "-c", code], cwd=worktree, env={"STEP_VAR": "x"}, timeout=30, sandbox=False)
    assert result.ok, result.stderr
    assert "hunter2" not in result.stdout
    assert "SELFHEAL_TEST_SECRET" not in result.stdout
    assert '"STEP_VAR": "x"' in result.stdout
    assert '"PATH"' in result.stdout


def test_timeout_kills_the_whole_process_group(worktree: Path) -> None:
    script = "sleep 30 & echo $! > child.pid; sleep 30"
    started = time.monotonic()
    result = run_command(["sh", "-c", script], cwd=worktree, env={}, timeout=1, sandbox=False)
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.ok
    assert elapsed < 10
    assert "timeout" in result.stderr
    child = int((worktree / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while not _gone(child):
        assert time.monotonic() < deadline, f"background child {child} survived the timeout"
        time.sleep(0.05)


def test_sandboxed_timeout_is_reported_too(worktree: Path) -> None:
    started = time.monotonic()
    result = run_command(["sleep", "30"], cwd=worktree, env={}, timeout=1, sandbox=True, writable=worktree)
    assert result.timed_out
    assert time.monotonic() - started < 10


def test_relative_program_runs_from_cwd(worktree: Path) -> None:
    script = worktree / "run-tests.sh"
    script.write_text('#!/bin/sh\necho "ran with $#: $1"\n')
    script.chmod(0o755)
    result = run_command(
        ["./run-tests.sh", "a b"], cwd=worktree, env={}, timeout=10, sandbox=True, writable=worktree
    )
    assert result.ok, result.stderr
    assert result.stdout == "ran with 1: a b\n"


def test_output_is_truncated_keeping_head_and_tail(worktree: Path) -> None:
    code = "print('BEGIN' + 'x' * 200000 + 'END')"
    result = run_command([PY, "-c", code], cwd=worktree, env={}, timeout=30, sandbox=False, output_limit=1000)
    assert result.truncated
    assert len(result.stdout) < 1200
    assert result.stdout.startswith("BEGIN") and result.stdout.rstrip().endswith("END")
    assert "truncated" in result.stdout


def test_unknown_command_is_a_clear_error(worktree: Path) -> None:
    with pytest.raises(CommandError, match="command not found") as err:
        run_command(["no-such-binary-selfheal"], cwd=worktree, env={}, timeout=5, sandbox=False)
    assert not err.value.retryable


def test_memory_hog_is_stopped_by_the_limit(worktree: Path) -> None:
    code = "b = bytearray(2 * 1024 ** 3); print('allocated')"
    result = run_command(
        [PY, "-c", code], cwd=worktree, env={}, timeout=60, sandbox=True, writable=worktree, memory_mb=256
    )
    assert result.returncode != 0
    assert "allocated" not in result.stdout
    assert "MemoryError" in result.stderr or result.returncode < 0


def test_rlimit_fallback_when_bwrap_is_unusable(worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "bwrap_available", lambda: (False, "forced by the test"))
    hog = run_command(
        [PY, "-c", "b = bytearray(2 * 1024 ** 3)"],
        cwd=worktree,
        env={},
        timeout=60,
        sandbox=True,
        writable=worktree,
        memory_mb=256,
    )
    assert hog.sandboxed == "rlimit"
    assert hog.returncode != 0 and "MemoryError" in hog.stderr
    limits = run_command(
        [PY, "-c", "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"],
        cwd=worktree,
        env={},
        timeout=30,
        sandbox=True,
    )
    assert limits.stdout.strip() == "1024"


@pytest.fixture
def outside_dir() -> Iterator[Path]:
    """A writable directory on the real root filesystem (not /tmp, which the sandbox replaces)."""
    path = Path(tempfile.mkdtemp(prefix="selfheal-outside-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_sandbox_allows_only_the_worktree_to_be_written(worktree: Path, outside_dir: Path) -> None:
    _bwrap_or_skip()
    outside = outside_dir
    code = (
        "import sys\n"
        "open('inside.txt', 'w').write('ok')\n"
        "try:\n"
        f"    open({str(outside / 'escape.txt')!r}, 'w').write('escaped')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
        "else:\n"
        "    sys.exit(3)\n"
    )
    result = run_command([PY, "-c", code], cwd=worktree, env={}, timeout=60, sandbox=True, writable=worktree)
    assert result.sandboxed == "bwrap"
    assert result.ok, result.stderr
    assert f"refused {errno.EROFS}" in result.stdout  # read-only, not merely missing
    assert (worktree / "inside.txt").read_text() == "ok"
    assert not (outside / "escape.txt").exists()


def test_sandbox_has_no_network(worktree: Path, listener: int) -> None:
    _bwrap_or_skip()
    code = (
        f"import socket; socket.create_connection(('127.0.0.1', {listener}), timeout=5); print('connected')"
    )
    outside = run_command([PY, "-c", code], cwd=worktree, env={}, timeout=30, sandbox=False)
    assert outside.ok and "connected" in outside.stdout  # the listener is reachable without the sandbox
    inside = run_command([PY, "-c", code], cwd=worktree, env={}, timeout=30, sandbox=True, writable=worktree)
    assert inside.sandboxed == "bwrap"
    assert not inside.ok
    assert "connected" not in inside.stdout
    assert "ConnectionRefusedError" in inside.stderr or "OSError" in inside.stderr


def test_sandbox_has_a_private_tmp_and_home(worktree: Path) -> None:
    _bwrap_or_skip()
    marker = f"selfheal-sandbox-{os.getpid()}-{time.monotonic_ns()}"
    code = f"import os; open('/tmp/{marker}', 'w').write('x'); print(os.environ['HOME'])"
    result = run_command([PY, "-c", code], cwd=worktree, env={}, timeout=30, sandbox=True, writable=worktree)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "/tmp"
    assert not Path(f"/tmp/{marker}").exists()
