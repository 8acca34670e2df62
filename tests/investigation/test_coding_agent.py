"""The coding agent through a real Temporal worker on a real repository, driven by scripted models.

The repository is a small Python project whose unit test fails (`add` subtracts). The scripted
model lists and reads files, runs the tests (they fail), edits the bug, writes a regression test,
runs the tests (they pass) and answers; every model request and tool call is an activity, the
tests run under bubblewrap. Then an incident with no revert to propose gets that patch as its
proposal, on the ticket, with nothing run before an approval.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import git
import pytest
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage, RunUsage
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from connectors.incident_store import IncidentStore
from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from investigation.coding_agent import CodingBudget, coding_agent
from investigation.coding_tools import CodingToolError, confined
from investigation.telemetry import BudgetExceeded
from models import ids
from models.coding import CodingResult
from models.incident import TrackedAlert
from models.investigation import EditReads
from models.remediation import CodingRequest
from selfheal.settings import Settings
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.payloads import simple
from workflows.coding_agent import CodingAgentWorkflow
from workflows.incident import IncidentWorkflow

INCIDENT_HISTORIES = Path(__file__).parents[1] / "workflows" / "histories"
CODING_HISTORY = Path(__file__).parent / "histories" / "coding-agent-v1.json"
PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}
#: A secret the failing test prints, in a shape the redactor knows.
PRINTED_SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"
BUGGY = "def add(a, b):\n    return a - b\n"
REGRESSION = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class Regression(unittest.TestCase):\n"
    "    def test_add_adds(self):\n"
    "        self.assertEqual(add(20, 22), 42)\n"
)
TEST_STEP = [
    {"command": {"argv": ["/usr/bin/python3", "-m", "unittest", "discover", "-v"], "timeout": "60s"}}
]


def make_repo(path: Path, webhook_token: str) -> None:
    """The service's repository: `add` is wrong and its test says so, printing two secrets."""
    path.mkdir(parents=True)
    repo = git.Repo.init(path, initial_branch="main")
    (path / "calc.py").write_text(BUGGY)
    (path / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\n"
        "class Calc(unittest.TestCase):\n"
        "    def test_add(self):\n"
        f"        print('api_key={PRINTED_SECRET} token {webhook_token}')\n"
        "        self.assertEqual(add(2, 3), 5)\n"
    )
    (path / ".gitignore").write_text("__pycache__/\n")
    repo.index.add(["calc.py", "test_calc.py", ".gitignore"])
    repo.index.commit("calc: add numbers")
    repo.close()


@dataclass
class Script:
    """A scripted model: each step sees the messages so far and returns a response."""

    steps: list[Callable[[list[ModelMessage], AgentInfo], ModelResponse]]
    seen: list[list[ModelMessage]] = field(default_factory=list)

    def model(self) -> FunctionModel:
        async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            self.seen.append(list(messages))
            return self.steps[min(len(self.seen) - 1, len(self.steps) - 1)](messages, info)

        return FunctionModel(fn, model_name="scripted")

    def tool_returns(self) -> list[tuple[str, str]]:
        """What the model was shown, in order: (tool, result), a refusal as `RETRY: …`."""
        out: list[tuple[str, str]] = []
        for msg in self.seen[-1] if self.seen else []:
            if isinstance(msg, ModelRequest):
                for part in msg.parts:
                    if isinstance(part, ToolReturnPart):
                        retried = "RETRY: " if part.outcome == "retried" else ""
                        out.append((part.tool_name, retried + str(part.content)))
                    elif isinstance(part, RetryPromptPart) and part.tool_name:
                        out.append((part.tool_name, f"RETRY: {part.model_response()}"))
        return out


def call(name: str, **args: Any) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    def step(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[ToolCallPart(name, json.dumps(args), tool_call_id=f"c-{uuid.uuid4().hex[:8]}")],
            usage=RequestUsage(input_tokens=100, output_tokens=10),
        )

    return step


def answer(summary: str, tests: list[str]) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    def step(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        output = {"summary": summary, "tests": tests}
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, json.dumps(output), tool_call_id="final")],
            usage=RequestUsage(input_tokens=100, output_tokens=20),
        )

    return step


FIX_SCRIPT = [
    call("list_files"),
    call("run_tests"),
    call("read_file", path="calc.py"),
    call("edit_file", path="calc.py", old="return a - b", new="return a + b"),
    call("write_file", path="tests_regression/test_add.py", content=REGRESSION),
    call("write_file", path="tests_regression/__init__.py", content=""),
    call("run_tests"),
    answer(
        "add() subtracted; it now adds. tests_regression/test_add.py pins it.",
        ["tests_regression/test_add.py"],
    ),
]


@dataclass
class Coding:
    settings: Settings
    client: Client
    repo: Path
    last_id: str = ""

    async def run(self, service: str = "checkout") -> CodingResult:
        self.last_id = f"coding-{uuid.uuid4().hex[:8]}"
        alert = TrackedAlert(
            fingerprint="fp1",
            status="firing",
            labels={"alertname": "WrongTotals", "service": service},
            annotations={},
            startsAt=datetime.now(UTC),
        )
        result: CodingResult = await self.client.execute_workflow(
            "CodingAgentWorkflow",
            CodingRequest(
                incident_id=f"{uuid.uuid4().hex[:12]}-abc123",
                service=service,
                service_label="service",
                title="totals are wrong",
                alert=alert,
            ),
            id=self.last_id,
            task_queue=self.settings.temporal.task_queue,
            result_type=CodingResult,
            execution_timeout=timedelta(seconds=120),
        )
        return result


def coding_settings(temporal_address: str, data: Path, repo: Path, **coding: Any) -> Settings:
    return make_settings(
        temporal_address,
        data,
        investigation={
            "llm": {
                "model": "scripted-model",
                "api_key": "sk-never-sent",
                "prices": {"scripted-model": PRICE},
            },
            "coding_agent": {"enabled": True, **coding},
        },
        remediation={
            "include_library": False,
            "repos": {"app": {"path": str(repo)}},
            "services": {
                "checkout": {"repo": "app", "test": TEST_STEP, "deploy": [{"git_push": {"branch": "main"}}]}
            },
        },
    )


@pytest.fixture
async def coding(temporal_address: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """A worker whose coding model is the given script, over a fresh buggy repository."""
    workers: list[Any] = []

    async def start(script: Script, **section: Any) -> Coding:
        repo = tmp_path / "app"
        settings = coding_settings(temporal_address, tmp_path / "data", repo, **section)
        make_repo(repo, settings.webhook_token.get_secret_value())  # type: ignore[union-attr]
        client = await connect(settings.temporal)
        worker = build_worker(client, settings, coding_model=script.model())
        await worker.__aenter__()
        workers.append(worker)
        return Coding(settings, client, repo)

    yield start
    for worker in workers:
        await worker.__aexit__(None, None, None)


def unittest_passes(repo: Path) -> bool:
    proc = subprocess.run(
        ["/usr/bin/python3", "-m", "unittest", "discover"], cwd=repo, capture_output=True, check=False
    )
    return proc.returncode == 0


async def test_the_agent_fixes_a_failing_test_with_a_real_patch(coding: Callable[..., Any]) -> None:
    script = Script(list(FIX_SCRIPT))
    co: Coding = await coding(script)
    assert not unittest_passes(co.repo), "the repository's test fails before"
    result = await co.run()

    assert result.status == "drafted", result.message
    assert result.proposable and result.tests_passed is True
    assert result.files == ["calc.py", "tests_regression/__init__.py", "tests_regression/test_add.py"]
    assert "-    return a - b\n+    return a + b" in result.patch
    assert "+        self.assertEqual(add(20, 22), 42)" in result.patch
    assert "test_add_adds" in result.test_output and "OK" in result.test_output
    assert result.summary.startswith("add() subtracted")

    shown = script.tool_returns()
    tests = [text for tool, text in shown if tool == "run_tests"]
    assert tests[0].startswith("tests FAILED") and "AssertionError: -1 != 5" in tests[0]
    assert tests[1].startswith("tests PASSED")
    # The test printed secrets: neither reached the model nor the ticket's test output.
    token = co.settings.webhook_token.get_secret_value()  # type: ignore[union-attr]
    for text in (tests[0], tests[1], result.test_output):
        assert PRINTED_SECRET not in text and token not in text and "[REDACTED]" in text

    run = result.run
    assert run is not None and run.agent == "coding" and run.outcome == "ok"
    assert run.tool_calls == {
        "edit_file": 1,
        "list_files": 1,
        "read_file": 1,
        "run_tests": 2,
        "write_file": 2,
    }
    assert run.edits == [
        EditReads(path="calc.py", read_before=["calc.py"]),
        EditReads(path="tests_regression/test_add.py", read_before=["calc.py"]),
        EditReads(path="tests_regression/__init__.py", read_before=["calc.py"]),
    ]
    assert (run.requests, run.cost_usd) == (8, pytest.approx(0.89)), "800 + 90 tokens at $1000/M"
    store = IncidentStore(co.settings.store_url)
    spend = store.llm_spend("none", datetime.now(UTC) - timedelta(days=1))
    store.close()
    assert spend.day_runs == 1 and spend.day_cost == pytest.approx(0.89)

    # The worktree is gone and the repository untouched; the patch fixes it there too.
    assert not (co.settings.worktrees_dir / "coding").exists() or not any(
        (co.settings.worktrees_dir / "coding").iterdir()
    )
    assert (co.repo / "calc.py").read_text() == BUGGY
    assert git.Repo(co.repo).git.branch("--list", "selfheal/*") == ""
    subprocess.run(["git", "apply"], cwd=co.repo, input=result.patch.encode(), check=True)
    assert unittest_passes(co.repo), "the repository's test passes after"

    history = await co.client.get_workflow_handle(co.last_id).fetch_history()
    replayer = Replayer(workflows=[CodingAgentWorkflow], plugins=[PydanticAIPlugin()])
    await replayer.replay_workflow(history)


async def test_paths_leaving_the_worktree_are_refused(coding: Callable[..., Any], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the worker's secret\n")
    script = Script(
        [
            call("read_file", path="../outside/secret.txt"),
            call("read_file", path=str(outside / "secret.txt")),
            call("write_file", path=".git/hooks/post-checkout", content="#!/bin/sh\nid\n"),
            call("edit_file", path="escape/secret.txt", old="secret", new="owned"),
            call("list_files", path="escape"),
            call("search_files", pattern="secret", path="escape/"),
            answer("Nothing safe to change.", []),
        ]
    )
    co: Coding = await coding(script)
    repo = git.Repo(co.repo)
    (co.repo / "escape").symlink_to(outside)
    repo.index.add(["escape"])
    repo.index.commit("a symlink out of the repository")
    result = await co.run()

    assert result.status == "no_patch", result.message
    shown = script.tool_returns()
    assert [tool for tool, _ in shown] == [
        "read_file",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "search_files",
    ]
    reasons = [text for _, text in shown]
    assert all(text.startswith("RETRY: ") for text in reasons), reasons
    assert "'..' is not allowed" in reasons[0]
    assert "is absolute" in reasons[1]
    assert "inside .git" in reasons[2]
    assert all("outside the repository" in text for text in reasons[3:]), reasons[3:]
    assert result.run is not None and result.run.edits == [], "a refused edit is no edit"
    assert (outside / "secret.txt").read_text() == "the worker's secret\n"
    assert not any("the worker's secret" in text for text in reasons)
    assert not (co.repo / ".git" / "hooks" / "post-checkout").exists()


def test_confinement_refuses_writes_through_symlinks_inside(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "real.py").write_text("x = 1\n")
    (tmp_path / "alias.py").symlink_to(tmp_path / "real.py")
    (tmp_path / "gitdir").symlink_to(tmp_path / ".git")
    assert confined(tmp_path, "alias.py") == tmp_path / "alias.py"  # reading within is fine
    with pytest.raises(CodingToolError, match="symlink"):
        confined(tmp_path, "alias.py", write=True)
    with pytest.raises(CodingToolError, match=r"\.git"):
        confined(tmp_path, "gitdir/config")
    with pytest.raises(CodingToolError, match="empty"):
        confined(tmp_path, "")


async def test_a_runaway_agent_is_stopped_by_its_step_budget(coding: Callable[..., Any]) -> None:
    script = Script([call("read_file", path="calc.py")])
    co: Coding = await coding(script, max_steps=3)
    result = await co.run()
    assert result.status == "budget_exhausted" and not result.proposable
    assert result.message == "The coding agent stopped: request budget of 3 per run reached after 3 requests."
    assert result.run is not None and result.run.stopped_by == "requests" and result.run.requests == 3
    assert not result.patch and len(script.seen) == 3


def test_the_wall_time_budget_stops_before_the_next_request() -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)
    budget = CodingBudget(request_limit=50, deadline=started + timedelta(seconds=20), max_seconds=20)
    with pytest.raises(BudgetExceeded) as err:
        budget.check_before_request(RunUsage(requests=4))
    assert err.value.kind == "wall_time"
    assert err.value.reason == "wall-time budget of 20 s per run reached after 4 requests"
    CodingBudget(request_limit=50, deadline=datetime.now(UTC) + timedelta(minutes=5)).check_before_request(
        RunUsage(requests=4)
    )


async def test_a_service_without_a_test_command_is_not_worked_on(coding: Callable[..., Any]) -> None:
    script = Script([call("list_files")])
    co: Coding = await coding(script)
    result = await co.run(service="billing")
    assert result.status == "not_run" and "no remediation.services.billing defaults" in result.message
    assert script.seen == [], "no model request without a workspace"


# --- the incident: no revert applies, the agent's patch becomes the proposal ------------------------


async def test_an_incident_gets_the_patch_as_its_proposal_and_nothing_runs(
    temporal_address: str, tmp_path: Path
) -> None:
    repo = tmp_path / "app"
    settings = coding_settings(temporal_address, tmp_path / "data", repo)
    make_repo(repo, settings.webhook_token.get_secret_value())  # type: ignore[union-attr]
    head = git.Repo(repo).head.commit.hexsha
    script = Script(list(FIX_SCRIPT))
    client = await connect(settings.temporal)
    tracker = LocalTracker(settings.local_db_path)
    async with build_worker(client, settings, tracker, coding_model=script.model()):
        with ApiServer(settings) as api:
            async with api.client() as http:
                resp = await http.post("/api/v1/alerts", json=simple(service="checkout"))
                incident_id = resp.json()["incident_id"]
                view = await wait_for_incident(
                    http, incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=90
                )
                ticket = (await http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
                page = (await http.get(f"/api/v1/incidents/{incident_id}/page")).json()["page"]
                decided = await http.post(
                    f"/api/v1/incidents/{incident_id}/decision", json={"decision": "reject"}
                )
                assert decided.status_code == 200, decided.text
                await wait_for_incident(http, incident_id, lambda v: v["stage"] == "closed")
    incident_history = await client.get_workflow_handle(
        ids.workflow_id_for_group(view["group_id"])
    ).fetch_history()
    coding_history = await client.get_workflow_handle(f"coding-{incident_id}").fetch_history()
    await Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        incident_history
    )
    await Replayer(workflows=[CodingAgentWorkflow], plugins=[PydanticAIPlugin()]).replay_workflow(
        coding_history
    )
    keep(incident_history.to_json(), coding_history.to_json())

    kinds = [e["kind"] for e in view["timeline"]]
    assert kinds.index("investigated") < kinds.index("coding_drafted") < kinds.index("proposal_planned")
    assert view["coding"]["status"] == "drafted" and view["coding"]["run"]["agent"] == "coding"
    proposal = view["proposal"]
    assert proposal["kind"] == "patch" and proposal["mode"] == "approve" and len(proposal["digest"]) == 64
    assert proposal["description"].startswith("Apply a patch to app (calc.py")
    assert "drafted by the coding agent" in proposal["description"]
    assert not view["remediations"], "nothing runs before an approval"
    assert git.Repo(repo).head.commit.hexsha == head and (repo / "calc.py").read_text() == BUGGY
    comment = next(c["body"] for c in ticket["comments"] if "The coding agent drafted a patch" in c["body"])
    assert "+    return a + b" in comment and "test_add_adds" in comment and "add() subtracted" in comment
    assert PRINTED_SECRET not in comment and "Model run: scripted-model, ok" in comment
    assert "Coding agent" in page and proposal["digest"] in page and "+    return a + b" in page


def keep(incident: str, coding: str) -> None:
    """With `SELFHEAL_RECORD_HISTORY=incident-v8-…` commit both histories (never overwriting)."""
    name = os.environ.get("SELFHEAL_RECORD_HISTORY", "")
    if not name.startswith("incident-"):
        return
    for target, text in ((INCIDENT_HISTORIES / f"{name}.json", incident), (CODING_HISTORY, coding)):
        assert not target.exists(), f"{target} exists: committed histories are never overwritten"
        target.write_text(text)


async def test_committed_coding_agent_history_replays() -> None:
    """A coding run recorded when the agent joined (PATCH_CODING_AGENT) replays on today's code;
    the incident history around it replays with the other incident histories."""
    coding_agent()  # a fresh process builds the durable agent before replaying, as a worker does
    replayer = Replayer(workflows=[CodingAgentWorkflow], plugins=[PydanticAIPlugin()])
    await replayer.replay_workflow(WorkflowHistory.from_json("coding-agent-v1", CODING_HISTORY.read_text()))


async def test_a_budget_stop_is_said_on_the_ticket(temporal_address: str, tmp_path: Path) -> None:
    repo = tmp_path / "app"
    settings = coding_settings(temporal_address, tmp_path / "data", repo, max_steps=2)
    make_repo(repo, "unused-token-value")
    script = Script([call("list_files")])
    client = await connect(settings.temporal)
    tracker = LocalTracker(settings.local_db_path)
    async with build_worker(client, settings, tracker, coding_model=script.model()):
        with ApiServer(settings) as api:
            async with api.client() as http:
                resp = await http.post("/api/v1/alerts", json=simple(service="checkout"))
                incident_id = resp.json()["incident_id"]
                view = await wait_for_incident(
                    http, incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=90
                )
                ticket = (await http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert view["coding"]["status"] == "budget_exhausted" and view["proposal"] is None
    assert any(
        "The coding agent stopped: request budget of 2 per run reached after 2 requests." in c["body"]
        for c in ticket["comments"]
    ), ticket["comments"]
