"""Run a playbook command from an argv list: never a shell, no inherited secrets, bounded in time,
memory and output, and sandboxed with bubblewrap when this machine allows it.

Commands come from playbooks and run against code selfheal did not write (the tests of a fix), so
the defaults are defensive: the worker's environment (tokens, cloud credentials) is not passed on,
the whole process group is killed on timeout, output is capped, and with `sandbox=True` the command
sees only the system directories (read-only, minus their secrets), the toolchain paths its
repository declares (read-only), a private /tmp and HOME, no network, and the worktree (the only
writable place). Nothing else of the worker's filesystem exists in there: not its home (SSH keys,
kubeconfig), its data dir (tokens), its config. Where bubblewrap
cannot run (no user namespaces, a locked-down container) the sandbox degrades to resource limits,
says so in the log and reports `sandboxed="rlimit"` so the caller can decide whether that is enough.
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Literal

import structlog
from pydantic import BaseModel

from connectors.base import ConnectorError

log = structlog.get_logger(__name__)

SandboxKind = Literal["bwrap", "rlimit", "none"]

#: Inside bwrap a private tmpfs; HOME points there because the real one is read-only in the sandbox.
_SANDBOX_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs per command, not the shared /tmp
#: What a command inherits from the worker; everything else must be passed explicitly in `env`.
_INHERITED_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": _SANDBOX_TMP}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_FILE_BYTES = 1 << 30
_MAX_OPEN_FILES = 1024
#: How long to wait for the pipes to drain once the process group is dead.
_DRAIN_SECONDS = 5.0
_READ_CHUNK = 65536
_PROBE_TIMEOUT = 10.0
#: System directories a sandboxed command reads (read-only; those missing here are skipped). The
#: root itself is an empty tmpfs: nothing outside these, the declared paths and the worktree exists.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Inside the system directories, what no test needs and the worker's user may be able to read.
SYSTEM_SECRETS = ("/etc/ssh", "/etc/ssl/private", "/etc/selfheal", "/etc/shadow", "/etc/gshadow")
#: The namespace options every sandboxed command gets (the probe runs exactly these).
_BWRAP_OPTIONS = (
    "--unshare-all",  # no network (only a private loopback), own pid/ipc/uts namespaces
    "--die-with-parent",
    "--new-session",  # no TIOCSTI into the worker's terminal
    "--cap-drop",
    "ALL",  # as root, capabilities would allow remounting the read-only binds
)


def _system_mounts() -> list[str]:
    mounts: list[str] = []
    for path in SYSTEM_DIRS:
        mounts += ["--ro-bind-try", path, path]
    return [*mounts, "--dev", "/dev", "--proc", "/proc", "--tmpfs", _SANDBOX_TMP]


class CommandError(ConnectorError):
    """The command could not be started at all; `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)


class CommandResult(BaseModel):
    """What a command did; a non-zero exit or a timeout is a result, not an exception."""

    returncode: int
    stdout: str
    stderr: str
    duration_seconds: float
    sandboxed: SandboxKind
    timed_out: bool = False
    #: True when stdout or stderr exceeded `output_limit` and its middle was cut out.
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


def bwrap_available() -> tuple[bool, str]:
    """Whether bubblewrap can build our sandbox here, and why not; probed once per process.

    The probe runs the exact options we use, because bwrap may exist and still fail (no user
    namespaces for unprivileged users, `/proc` not mountable in an unprivileged container).
    """
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe_bwrap()
            if not _probe_result[0]:
                log.warning("bwrap_unusable", reason=_probe_result[1], fallback="rlimit")
        return _probe_result


def _probe_bwrap() -> tuple[bool, str]:
    path = shutil.which("bwrap")
    if path is None:
        return False, "bwrap not found on PATH (apt-get install bubblewrap)"
    try:
        proc = subprocess.run(
            [path, *_BWRAP_OPTIONS, *_system_mounts(), "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            env={"PATH": _INHERITED_ENV["PATH"]},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{path}: {type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        return False, f"{path}: {detail}"
    return True, f"{path}: ok"


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    sandbox: bool,
    writable: Path | None = None,
    readable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
    memory_mb: int = 1024,
    output_limit: int = 64_000,
) -> CommandResult:
    """Run `argv` (no shell) in `cwd` and return its exit status and (capped) output.

    With `sandbox=True` the command also gets an address-space, CPU-time, open-file and file-size
    limit, and, when bwrap works, a view holding only the system directories, `readable` (toolchain
    paths, read-only) and `writable` (the worktree), with no network. `hidden` (the worker's data
    dir, config dir, home) is covered by an empty tmpfs wherever a bind would expose it; a
    `readable` path containing one of them is refused, since it would expose it again.
    """
    _validate(argv, env, timeout, output_limit)
    if not cwd.is_dir():
        raise CommandError(f"working directory {cwd} does not exist")
    if writable is not None and (not writable.is_dir() or writable.resolve() == Path("/")):
        raise CommandError(f"writable directory {writable} must be an existing directory other than /")

    kind: SandboxKind = "none"
    if sandbox:
        usable, _ = bwrap_available()
        kind = "bwrap" if usable else "rlimit"
    child_env = _child_env(env, home_in_tmp=kind == "bwrap")
    if not _executable(argv[0], cwd, child_env["PATH"]):
        raise CommandError(f"command not found: {argv[0]!r} (PATH={child_env['PATH']})")

    full_argv = list(argv)
    if kind == "bwrap":
        full_argv = _bwrap_argv(argv, cwd=cwd, writable=writable, readable=readable, hidden=hidden)
    preexec = _rlimits(memory_mb, timeout) if sandbox else None

    started = time.monotonic()
    try:
        # An argv list with shell=False: no argument is ever parsed by a shell.
        proc = subprocess.Popen(
            full_argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            shell=False,
            close_fds=True,
            start_new_session=True,  # its own process group, so a timeout kills the children too
            # Only resource.setrlimit calls run between fork and exec: nothing that takes a lock.
            preexec_fn=preexec,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise CommandError(f"cannot start {argv[0]!r}: {exc}") from exc

    stdout = _Capture(proc.stdout, output_limit)
    stderr = _Capture(proc.stderr, output_limit)
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Also on a normal exit: background children left behind must not outlive the step.
        _kill_group(proc)
        proc.wait()
    stdout.join(_DRAIN_SECONDS)
    stderr.join(_DRAIN_SECONDS)
    duration = time.monotonic() - started

    err_text = stderr.text()
    if timed_out:
        if err_text and not err_text.endswith("\n"):
            err_text += "\n"
        err_text += f"[selfheal] killed (whole process group) after the {timeout:g}s timeout\n"
        log.warning("command_timeout", argv0=argv[0], timeout=timeout, sandboxed=kind)
    return CommandResult(
        returncode=proc.returncode,
        stdout=stdout.text(),
        stderr=err_text,
        duration_seconds=round(duration, 3),
        sandboxed=kind,
        timed_out=timed_out,
        truncated=stdout.truncated or stderr.truncated,
    )


def _validate(argv: list[str], env: dict[str, str], timeout: float, output_limit: int) -> None:
    if not argv or not all(isinstance(a, str) for a in argv):
        raise CommandError("argv must be a non-empty list of strings")
    if any("\0" in a for a in argv):
        raise CommandError("argv contains a NUL byte")
    for name, value in env.items():
        if not _ENV_NAME.match(name) or "\0" in value:
            raise CommandError(f"invalid environment variable {name!r}")
    if not timeout > 0:
        raise CommandError("timeout must be positive")
    if output_limit < 2:
        raise CommandError("output_limit must be at least 2")


def _executable(program: str, cwd: Path, path: str) -> bool:
    """Whether exec would find `program`: a name is looked up on PATH, a path is relative to `cwd`."""
    if "/" not in program:
        return shutil.which(program, path=path) is not None
    candidate = cwd / program
    return candidate.is_file() and os.access(candidate, os.X_OK)


def _child_env(extra: dict[str, str], *, home_in_tmp: bool) -> dict[str, str]:
    """PATH, LANG and HOME from the worker (or defaults), then the step's own variables."""
    env = {name: os.environ.get(name) or default for name, default in _INHERITED_ENV.items()}
    if home_in_tmp:
        env["HOME"] = _SANDBOX_TMP
    env.update(extra)
    return env


def _bwrap_argv(
    argv: list[str],
    *,
    cwd: Path,
    writable: Path | None,
    readable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
) -> list[str]:
    """System binds, then secrets covered, then declared toolchain paths, then the worktree: each
    later mount wins, so a toolchain under a hidden home (~/.pyenv) shows while ~/.ssh does not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:  # the probe found it; it vanished since
        raise CommandError("bwrap disappeared from PATH", retryable=True)
    secrets = [Path(p) for p in SYSTEM_SECRETS] + [Path(p).resolve() for p in hidden]
    shown = [Path(p).resolve() for p in readable]
    for path in shown:
        covered = [s for s in secrets if s == path or s.is_relative_to(path)]
        if covered or path == Path("/"):
            raise CommandError(f"sandbox path {path} would expose {covered[0] if covered else '/'}")
    mounts = _system_mounts()
    visible = [Path(d) for d in SYSTEM_DIRS] + shown
    for secret in secrets:
        if not any(secret.is_relative_to(v) for v in visible) or secret.is_relative_to(_SANDBOX_TMP):
            continue  # never bound: it does not exist in the sandbox at all
        if secret.is_dir():
            mounts += ["--tmpfs", str(secret)]
        elif secret.exists():
            mounts += ["--ro-bind", "/dev/null", str(secret)]
    for path in shown:
        mounts += ["--ro-bind-try", str(path), str(path)]
    if writable is not None:
        target = str(writable.resolve())
        mounts += ["--bind", target, target]  # last: a worktree under /tmp or the data dir stays visible
    return [bwrap, *_BWRAP_OPTIONS, *mounts, "--chdir", str(cwd.resolve()), "--", *argv]


def _rlimits(memory_mb: int, timeout: float) -> Callable[[], None]:
    """A preexec function applying the limits; values are computed here, in the parent."""
    cpu = math.ceil(timeout) + 1
    wanted = [
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_NOFILE, _MAX_OPEN_FILES),
        (resource.RLIMIT_FSIZE, _MAX_FILE_BYTES),
        (resource.RLIMIT_CORE, 0),
    ]
    limits: list[tuple[int, int, int]] = []
    for which, value in wanted:
        _, hard = resource.getrlimit(which)
        capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
        limits.append((which, capped, capped))

    def apply() -> None:
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))

    return apply


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Capture:
    """Drains one pipe in a thread, keeping the first and last halves of `limit` bytes.

    Draining continuously keeps a chatty command from blocking on a full pipe; keeping the tail
    keeps the part of a test run that matters (the failure summary) when the output is huge.
    """

    def __init__(self, stream: IO[bytes] | None, limit: int) -> None:
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with stream:
            while chunk := os.read(stream.fileno(), _READ_CHUNK):
                self._total += len(chunk)
                room = self._head_limit - len(self._head)
                if room > 0:
                    self._head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self._tail += chunk
                    if len(self._tail) > 2 * self._tail_limit:
                        del self._tail[: -self._tail_limit]

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def truncated(self) -> bool:
        return self._total > self._head_limit + self._tail_limit

    def text(self) -> str:
        tail = bytes(self._tail[-self._tail_limit :]) if self._tail_limit else b""
        if not self.truncated:
            return (bytes(self._head) + bytes(self._tail)).decode(errors="replace")
        dropped = self._total - len(self._head) - len(tail)
        marker = f"\n[... {dropped} bytes of output truncated ...]\n"
        return bytes(self._head).decode(errors="replace") + marker + tail.decode(errors="replace")
