"""build_tracker: the worker's Jira is checked against the server before anything else starts.

A `cloud` or `api_version` setting that the server contradicts stops `selfheal worker` and
`selfheal api` with one line naming the setting (exit 2); a Jira that is down does not keep the
worker from starting.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jira.settings import JiraSettings
from connectors.jira.tracker import JiraTracker
from selfheal.clients import build_tracker
from selfheal.settings import ConfigError, Settings, TrackerSettings
from tests.support.jira import JiraFake


@pytest.fixture
def server_jira() -> Iterator[JiraFake]:
    with JiraFake(users={"bot": "token"}) as jira:
        yield jira


def jira_settings(url: str, tmp_path: Path, **over: object) -> Settings:
    jira = JiraSettings(url=url, project="OPS", user="bot", api_token="token", **over)  # type: ignore[arg-type]
    return Settings(tracker=TrackerSettings(kind="jira", jira=jira), data_dir=tmp_path / "data")


@pytest.mark.parametrize("command", ["worker", "api"])
def test_worker_and_api_refuse_to_start_when_cloud_contradicts_the_server(
    command: str, server_jira: JiraFake, tmp_path: Path
) -> None:
    config = tmp_path / "selfheal.yaml"
    config.write_text(
        "env: production\n"
        f"data_dir: {tmp_path / 'data'}\n"
        "tracker:\n"
        "  kind: jira\n"
        "  jira:\n"
        f"    url: {server_jira.url}\n"
        "    project: OPS\n"
        "    user: bot\n"
        "    api_token: token\n"
        "    cloud: true\n"
        "webhook_token: alertmanager-token-0123456789\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    result = subprocess.run(
        [sys.executable, "-m", "selfheal", "--config", str(config), command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: settings: tracker.jira.cloud: set to true but"), lines[0]
    assert "deploymentType" in lines[0]


def test_api_version_3_on_server_is_a_config_error(server_jira: JiraFake, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tracker\.jira\.api_version: 3 is Jira Cloud only"):
        build_tracker(jira_settings(server_jira.url, tmp_path, api_version=3))


def test_jira_down_at_start_still_builds_the_tracker(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracker = build_tracker(jira_settings(f"http://127.0.0.1:{port}", tmp_path))
    assert isinstance(tracker, JiraTracker)
    tracker.close()


def test_create_ledger_shares_the_incident_store_database(server_jira: JiraFake, tmp_path: Path) -> None:
    settings = jira_settings(server_jira.url, tmp_path)
    tracker = build_tracker(settings)
    assert isinstance(tracker, JiraTracker)
    assert tracker.ledger.url == settings.store_url
    tracker.close()
