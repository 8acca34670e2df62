"""Settings through the real CLI: YAML file, `SELFHEAL_*` overrides, and one-line errors with exit 2.

Every case runs `python -m selfheal …` as a subprocess with a clean environment (no inherited
`SELFHEAL_*`) and observes what the process did: which address it called with which token,
which task queue it polled, whom the API authenticated, or its exit code and stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.temporal_server import free_port

pytestmark = pytest.mark.timeout(120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "selfheal", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def closed_port() -> int:
    """A port nothing listens on (bound and released just now)."""
    return free_port()


class Recorder:
    """A tiny selfheal API stand-in that records who called it and with which credentials."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        calls = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                calls.append((self.path, self.headers.get("Authorization")))
                body = b'{"incidents": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[Any]:
    made: list[Recorder] = []

    def make() -> Recorder:
        rec = Recorder()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()


@pytest.fixture
def temporal(temporal_address: str) -> str:
    """The session's Temporal server; each test isolates itself with its own task queue."""
    return temporal_address


def assert_lists_via(result: subprocess.CompletedProcess[str], rec: Recorder, token: str) -> None:
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"incidents": []}
    assert rec.requests == [("/api/v1/incidents", f"Bearer {token}")]


# --- loading ---------------------------------------------------------------------------------------


def client_config(path: Path, port: int, token: str) -> Path:
    """A config whose data dir holds the CLI's API token (`<data_dir>/api-token`, as `selfheal dev`
    leaves it)."""
    data_dir = path.parent / f"{path.stem}-data"
    data_dir.mkdir()
    (data_dir / "api-token").write_text(token + "\n")
    return write_config(
        path, f"host: 127.0.0.1\nport: {port}\nwebhook_token: wh-{token}\ndata_dir: {data_dir}\n"
    )


def test_config_flag_loads_yaml(tmp_path: Path, recorders: Any) -> None:
    rec = recorders()
    cfg = client_config(tmp_path / "selfheal.yaml", rec.port, "ft-1")
    result = run_cli(tmp_path, "--config", str(cfg), "incidents", "list", "--json")
    assert_lists_via(result, rec, "ft-1")


def test_selfheal_config_env_loads_yaml(tmp_path: Path, recorders: Any) -> None:
    rec = recorders()
    cfg = client_config(tmp_path / "selfheal.yaml", rec.port, "ft-2")
    result = run_cli(tmp_path, "incidents", "list", "--json", env=clean_env(SELFHEAL_CONFIG=str(cfg)))
    assert_lists_via(result, rec, "ft-2")


def test_config_flag_beats_selfheal_config_env(tmp_path: Path, recorders: Any) -> None:
    flag_rec, env_rec = recorders(), recorders()
    flag_cfg = client_config(tmp_path / "flag.yaml", flag_rec.port, "from-flag")
    env_cfg = client_config(tmp_path / "env.yaml", env_rec.port, "from-env")
    result = run_cli(
        tmp_path,
        "-c",
        str(flag_cfg),
        "incidents",
        "list",
        "--json",
        env=clean_env(SELFHEAL_CONFIG=str(env_cfg)),
    )
    assert_lists_via(result, flag_rec, "from-flag")
    assert env_rec.requests == []


def test_env_overrides_beat_the_file(tmp_path: Path, recorders: Any) -> None:
    """SELFHEAL_PORT beats the file's port; SELFHEAL_API_TOKEN beats `<data_dir>/api-token`; the
    webhook token is never the CLI's credential."""
    file_rec, env_rec = recorders(), recorders()
    cfg = client_config(tmp_path / "selfheal.yaml", file_rec.port, "file-token")
    env = clean_env(
        SELFHEAL_CONFIG=str(cfg),
        SELFHEAL_PORT=str(env_rec.port),
        SELFHEAL_API_TOKEN="env-tok",
        SELFHEAL_WEBHOOK_TOKEN="webhook-tok",
    )
    result = run_cli(tmp_path, "incidents", "list", "--json", env=env)
    assert_lists_via(result, env_rec, "env-tok")
    assert file_rec.requests == []


def test_nested_env_override_keeps_the_rest_of_the_section(tmp_path: Path, temporal: str) -> None:
    """SELFHEAL_TEMPORAL__ADDRESS replaces only `temporal.address`; the file's task queue stays."""
    queue = "tq-file-" + uuid.uuid4().hex[:8]
    cfg = write_config(
        tmp_path / "selfheal.yaml",
        f"env: production\ntemporal:\n  address: 127.0.0.1:{closed_port()}\n  task_queue: {queue}\n",
    )
    log = tmp_path / "worker.log"
    env = clean_env(
        SELFHEAL_CONFIG=str(cfg), SELFHEAL_TEMPORAL__ADDRESS=temporal, SELFHEAL_DATA_DIR=str(tmp_path / "d")
    )
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfheal", "worker"], cwd=tmp_path, env=env, stdout=fh, stderr=fh
        )
    try:
        deadline = time.monotonic() + 30
        while "worker started" not in log.read_text():
            assert proc.poll() is None, f"worker exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        started = next(line for line in log.read_text().splitlines() if "worker started" in line)
        assert queue in started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_token_create_line_pasted_into_the_config_authenticates_the_cli(
    tmp_path: Path, temporal: str
) -> None:
    """`selfheal token create` prints a token and an `auth.users` line; pasted under `auth.users`,
    the token makes the CLI that user, with that role, against a real `selfheal api`."""
    made = run_cli(tmp_path, "token", "create", "alice", "--role", "approver")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    token = lines[0].removeprefix("token: ")
    assert token.startswith("shu_") and len(token) > 40
    user_line = lines[-1]
    assert lines[-3:-1] == ["auth:", "  users:"]
    assert user_line.startswith("    alice: {roles: [approver], token_sha256: ")
    assert token not in user_line, "only the digest goes into the config"
    viewer = run_cli(tmp_path, "token", "create", "vera").stdout.splitlines()
    port = free_port()
    cfg = write_config(
        tmp_path / "selfheal.yaml",
        f"env: production\nport: {port}\nwebhook_token: tok\n"
        f"temporal:\n  address: {temporal}\n"
        f"auth:\n  users:\n{user_line}\n{viewer[-1]}\n",
    )
    env = clean_env(SELFHEAL_CONFIG=str(cfg))
    log = tmp_path / "api.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfheal", "api"], cwd=tmp_path, env=env, stdout=fh, stderr=fh
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"api exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        missing = "0123456789ab-abcdef"
        no_token = run_cli(tmp_path, "approve", missing, env=env)
        assert no_token.returncode == 2 and "SELFHEAL_API_TOKEN" in no_token.stderr
        webhook = run_cli(tmp_path, "approve", missing, env={**env, "SELFHEAL_API_TOKEN": "tok"})
        assert webhook.returncode == 1 and "403" in webhook.stderr and "only posts alerts" in webhook.stderr
        as_viewer = run_cli(
            tmp_path, "approve", missing, env={**env, "SELFHEAL_API_TOKEN": viewer[0].removeprefix("token: ")}
        )
        assert as_viewer.returncode == 1 and "user 'vera' is not an approver" in as_viewer.stderr
        as_alice = {**env, "SELFHEAL_API_TOKEN": token}
        other = run_cli(tmp_path, "approve", missing, "--as", "bob", env=as_alice)
        assert other.returncode == 1 and "cannot act as 'bob'" in other.stderr
        allowed = run_cli(tmp_path, "approve", missing, env=as_alice)
        assert allowed.returncode == 1
        assert allowed.stderr.startswith("error: 404"), allowed.stderr
        audit = [json.loads(line) for line in log.read_text().splitlines() if '"audit"' in line]
        assert [(a["who"], a["outcome"]) for a in audit if a["action"] == "decision"] == [
            (None, "refused"),
            ("vera", "refused"),
            ("alice", "refused"),
            ("alice", "not_accepted"),
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_token_create_refuses_a_bad_role_or_name(tmp_path: Path) -> None:
    assert_one_line_error(run_cli(tmp_path, "token", "create", "alice", "--role", "god"), "--role")
    assert_one_line_error(run_cli(tmp_path, "token", "create", "al ice"), "NAME")


def test_legacy_approvers_setting_says_what_to_write_instead(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "selfheal.yaml", "webhook_token: tok\napprovers: [alice]\n")
    result = run_cli(tmp_path, "incidents", "list", env=clean_env(SELFHEAL_CONFIG=str(cfg)))
    assert_one_line_error(result, "approvers", "auth.users.<name>: {roles: [approver]")
    from_env = run_cli(tmp_path, "incidents", "list", env=clean_env(SELFHEAL_APPROVERS="a,b"))
    assert_one_line_error(from_env, "approvers", "selfheal token create")


# --- errors: exit 2, one line naming the field ----------------------------------------------------


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize(
    ("command", "text", "needles"),
    [
        pytest.param(
            ["api"],
            "host: 127.0.0.1\nport: 8080\npublic_url: a: b\n",
            [":3:", "invalid YAML"],
            id="bad-yaml-has-file-and-line",
        ),
        pytest.param(["incidents", "list"], "port: abc\n", ["port:", "integer"], id="wrong-type"),
        pytest.param(["worker"], "port: 99999\n", ["port:"], id="out-of-range"),
        pytest.param(
            ["incidents", "list"], "webhook_tokn: x\n", ["webhook_tokn:", "Extra"], id="unknown-key"
        ),
        pytest.param(
            ["incidents", "list"],
            "temporal:\n  adress: 10.0.0.1:7233\n",
            ["temporal.adress:", "Extra"],
            id="unknown-nested-key",
        ),
        pytest.param(
            ["incidents", "list"],
            "temporal:\n  rpc_timeout_seconds: soon\n",
            ["temporal.rpc_timeout_seconds:"],
            id="nested-wrong-type",
        ),
        pytest.param(
            ["incidents", "list"],
            "tracker:\n  kind: jira\n  jira:\n    url: https://jira.example\n",
            ["tracker.jira.project:"],
            id="jira-section-incomplete",
        ),
        pytest.param(["incidents", "list"], "- port\n", ["top level must be a mapping"], id="not-a-mapping"),
    ],
)
def test_invalid_config_file_exits_2_with_one_line(
    tmp_path: Path, command: list[str], text: str, needles: list[str]
) -> None:
    cfg = write_config(tmp_path / "bad.yaml", text)
    env = clean_env(SELFHEAL_TEMPORAL__ADDRESS=f"127.0.0.1:{closed_port()}", SELFHEAL_WEBHOOK_TOKEN="t")
    result = run_cli(tmp_path, "--config", str(cfg), *command, env=env)
    assert_one_line_error(result, str(cfg), *needles)


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--config", str(tmp_path / "nope.yaml"), "incidents", "list")
    assert_one_line_error(result, "nope.yaml", "cannot read")


def test_bad_env_value_exits_2_naming_the_field(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "incidents", "list", env=clean_env(SELFHEAL_TEMPORAL__RPC_TIMEOUT_SECONDS="x"))
    assert_one_line_error(result, "temporal.rpc_timeout_seconds:")


def test_jira_tracker_without_jira_section_stops_the_worker(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "selfheal.yaml", "tracker:\n  kind: jira\n")
    env = clean_env(SELFHEAL_TEMPORAL__ADDRESS=f"127.0.0.1:{closed_port()}", SELFHEAL_DATA_DIR=str(tmp_path))
    result = run_cli(tmp_path, "--config", str(cfg), "worker", env=env)
    assert_one_line_error(result, "tracker.jira")


def test_api_without_webhook_token_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli(tmp_path, "api", env=clean_env(SELFHEAL_PORT=str(port)))
    assert_one_line_error(result, "webhook_token")


def test_jira_api_version_from_env() -> None:
    """Env values arrive as strings: `3` selects REST v3, `4` is refused naming the field."""
    from selfheal.settings import Settings

    base = {"SELFHEAL_TRACKER__JIRA__URL": "https://jira.example", "SELFHEAL_TRACKER__JIRA__PROJECT": "OPS"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**base, "SELFHEAL_TRACKER__JIRA__API_VERSION": "3"}.items():
            mp.setenv(key, value)
        jira = Settings().tracker.jira
        assert jira is not None and jira.api_version == 3
        mp.setenv("SELFHEAL_TRACKER__JIRA__API_VERSION", "4")
        with pytest.raises(ValueError, match="api_version"):
            Settings()


def test_sandboxed_commands_never_see_the_data_dir_config_or_home_and_secrets_are_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selfheal.settings import load_settings

    for name in [k for k in os.environ if k.startswith("SELFHEAL_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "etc" / "selfheal.yaml"
    config.parent.mkdir()
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "webhook_token: webhook-token-0123456789\n"
        "tracker:\n  webhook_secret: jira-hmac-0123456789\n"
        "  jira: {url: 'https://jira.example', project: OPS, user: bot, api_token: jira-api-0123456789}\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    hidden = settings.sandbox_hidden()
    assert (tmp_path / "data").resolve() in hidden
    assert config.parent.resolve() in hidden
    assert Path.home() in hidden
    assert set(settings.secret_values()) >= {
        "webhook-token-0123456789",
        "jira-hmac-0123456789",
        "jira-api-0123456789",
    }
