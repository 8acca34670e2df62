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
#: Where that interpreter lives, declared as a toolchain path (it may be under a hidden home).
TOOLCHAIN = (Path(sys.base_prefix),)


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
    result = run_command(
        ["sleep", "30"], cwd=worktree, env={}, timeout=1, sandbox=True, writable=worktree, readable=TOOLCHAIN
    )
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
        [PY, "-c", code],
        cwd=worktree,
        env={},
        timeout=60,
        sandbox=True,
        writable=worktree,
        readable=TOOLCHAIN,
        memory_mb=256,
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
    result = run_command(
        [PY, "-c", code],
        cwd=worktree,
        env={},
        timeout=60,
        sandbox=True,
        writable=worktree,
        readable=TOOLCHAIN,
    )
    assert result.sandboxed == "bwrap"
    assert result.ok, result.stderr
    # Outside the worktree, the worker's filesystem is not even there (only system dirs are, read-only).
    assert f"refused {errno.ENOENT}" in result.stdout
    assert (worktree / "inside.txt").read_text() == "ok"
    assert not (outside / "escape.txt").exists()


def test_sandbox_has_no_network(worktree: Path, listener: int) -> None:
    _bwrap_or_skip()
    code = (
        f"import socket; socket.create_connection(('127.0.0.1', {listener}), timeout=5); print('connected')"
    )
    outside = run_command([PY, "-c", code], cwd=worktree, env={}, timeout=30, sandbox=False)
    assert outside.ok and "connected" in outside.stdout  # the listener is reachable without the sandbox
    inside = run_command(
        [PY, "-c", code],
        cwd=worktree,
        env={},
        timeout=30,
        sandbox=True,
        writable=worktree,
        readable=TOOLCHAIN,
    )
    assert inside.sandboxed == "bwrap"
    assert not inside.ok
    assert "connected" not in inside.stdout
    assert "ConnectionRefusedError" in inside.stderr or "OSError" in inside.stderr


def test_sandbox_has_a_private_tmp_and_home(worktree: Path) -> None:
    _bwrap_or_skip()
    marker = f"selfheal-sandbox-{os.getpid()}-{time.monotonic_ns()}"
    code = f"import os; open('/tmp/{marker}', 'w').write('x'); print(os.environ['HOME'])"
    result = run_command(
        [PY, "-c", code],
        cwd=worktree,
        env={},
        timeout=30,
        sandbox=True,
        writable=worktree,
        readable=TOOLCHAIN,
    )
    assert result.ok, result.stderr
    assert result.stdout.strip() == "/tmp"
    assert not Path(f"/tmp/{marker}").exists()


def test_sandbox_hides_the_workers_secrets(tmp_path: Path, outside_dir: Path) -> None:
    """The worst layout: the data dir (tokens, the worktree inside it), the config dir and a home
    with SSH keys and a kubeconfig, all under a path a repository declares as its toolchain's
    parent... refused; declared beside them instead, only the toolchain and the worktree show."""
    _bwrap_or_skip()
    root = outside_dir  # on the real filesystem, not under the sandbox's private /tmp
    home, data, config = root / "home", root / "data", root / "etc-selfheal"
    secrets = {
        home / ".ssh" / "id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----",
        home / ".kube" / "config": "client-key-data: c2VjcmV0",
        data / "webhook-token": "shw_webhook",
        data / "api-token": "shu_api",
        config / "selfheal.yaml": "api_token: jira-secret",
    }
    for path, text in secrets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    worktree = data / "worktrees" / "inc-1"
    worktree.mkdir(parents=True)
    (worktree / "app.txt").write_text("code")
    toolchain = root / "toolchain"
    (toolchain / "bin").mkdir(parents=True)
    (toolchain / "bin" / "tool").write_text("tool")
    code = (
        "import sys\n"
        f"for path in {[str(p) for p in secrets]!r} + ['/etc/shadow']:\n"
        "    try:\n"
        "        print('LEAK', path, open(path).read()[:20])\n"
        "    except OSError as exc:\n"
        "        print('hidden', path, exc.errno)\n"
        f"print('tool', open({str(toolchain / 'bin' / 'tool')!r}).read())\n"
        "print('code', open('app.txt').read())\n"
    )
    hidden = [data, config, home]
    result = run_command(
        [PY, "-c", code],
        cwd=worktree,
        env={},
        timeout=60,
        sandbox=True,
        writable=worktree,
        readable=(*TOOLCHAIN, toolchain),
        hidden=hidden,
    )
    assert result.ok, result.stderr
    assert "LEAK" not in result.stdout, result.stdout
    assert result.stdout.count("hidden ") == len(secrets) + 1
    assert "tool tool" in result.stdout and "code code" in result.stdout
    with pytest.raises(CommandError, match="would expose"):
        run_command(
            ["true"],
            cwd=worktree,
            env={},
            timeout=10,
            sandbox=True,
            writable=worktree,
            readable=[root],
            hidden=hidden,
        )
