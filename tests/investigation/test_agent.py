"""The LLM investigator through a real Temporal worker, driven by scripted pydantic-ai models.

Each test runs `InvestigationAgentWorkflow` on a worker built by `build_worker` with a
`FunctionModel` script standing in for the LLM: the script makes tool calls, sees their results
(as the model would), then answers. Model requests and live tool calls are activities.
"""

from __future__ import annotations

import json
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
from pydantic_ai.usage import RequestUsage
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.worker import Replayer

from connectors.incident_store import IncidentStore
from connectors.temporal import connect
from demo.observability import prometheus_server
from devstack.temporal_server import free_port
from investigation.agent import investigate_offline
from models.evidence import ChangeRef, Evidence, EvidenceSection, LogLine, MetricSeries
from models.incident import IncidentView, Stage, TrackedAlert
from models.investigation import Hypothesis, Investigation
from models.plan import MatchResult
from models.remediation import InvestigationRequest
from selfheal.clients import llm_run_config
from selfheal.settings import ConfigError, Settings, load_settings
from selfheal.worker import build_worker
from tests.support.app import make_settings
from tests.support.loki_fake import FakeLoki
from workflows.investigation_agent import InvestigationAgentWorkflow

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
#: $1000 per million tokens: the scripted requests (100 input, 10 output tokens) cost $0.11 each.
PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}
HOSTILE = ["{{ 7*7 }}", "$(id)", "{noformat}", "]", "`rm -rf /`", "{% raw %}", "${jndi:ldap://x}"]


def make_request(
    *, match: str | None = None, logs: int = 3, secret_line: str | None = None
) -> InvestigationRequest:
    alert = TrackedAlert(
        fingerprint="fp1",
        status="firing",
        labels={"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"},
        annotations={"summary": "5xx ratio above 5% on checkout"},
        startsAt=START,
    )
    lines = [
        LogLine(at=START - timedelta(seconds=i), line=f"ERROR upstream timeout pool exhausted #{i}")
        for i in range(logs)
    ]
    if secret_line:
        lines.insert(0, LogLine(at=START, line=secret_line))
    evidence = Evidence(
        incident_id="inc-1",
        gathered_at=START,
        sections=[
            EvidenceSection(
                source="metrics",
                status="ok",
                metrics=[
                    MetricSeries(
                        name="error ratio", query="sum(rate(errors[5m]))", points=[(START.timestamp(), 0.2)]
                    )
                ],
            ),
            EvidenceSection(source="logs", status="ok", logs=lines),
            EvidenceSection(
                source="changes",
                status="ok",
                changes=[
                    ChangeRef(
                        repo="app",
                        sha="abcdef1234567890",
                        author="dev",
                        committed_at=START - timedelta(minutes=10),
                        summary="shrink db pool to 2",
                        diff="--- a/config.yaml\n+++ b/config.yaml\n-pool: 10\n+pool: 2",
                    )
                ],
            ),
        ],
    )
    view = IncidentView(
        id="inc-1",
        group_id="g1",
        group_key='{}:{alertname="HighErrorRate"}',
        receiver="selfheal",
        stage=Stage.INVESTIGATING,
        status="firing",
        service="checkout",
        severity="critical",
        alertname="HighErrorRate",
        title="HighErrorRate on checkout",
        opened_at=START,
        alerts=[alert],
        evidence=evidence,
    )
    prior = Investigation(
        investigator="builtin",
        summary="builtin: error ratio up after a change",
        hypotheses=[Hypothesis(title="recent change", confidence=0.4, evidence=["changes:app@abcdef1"])],
    )
    match_result = (
        MatchResult(fingerprint="fp1", alertname="HighErrorRate", playbook=match, mode="auto")
        if match
        else None
    )
    return InvestigationRequest(view=view, match=match_result, prior=prior)


@dataclass
class Script:
    """A scripted model: each step gets the messages so far and returns parts; it records what it saw."""

    steps: list[Callable[[list[ModelMessage], AgentInfo], ModelResponse]]
    seen: list[list[ModelMessage]] = field(default_factory=list)

    def model(self) -> FunctionModel:
        async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            self.seen.append(list(messages))
            step = self.steps[min(len(self.seen) - 1, len(self.steps) - 1)]
            return step(messages, info)

        return FunctionModel(fn, model_name="scripted")

    def tool_returns(self) -> dict[str, list[str]]:
        """What the model was shown for each tool (results and retry prompts), by tool name."""
        out: dict[str, list[str]] = {}
        for msg in self.seen[-1] if self.seen else []:
            if isinstance(msg, ModelRequest):
                for part in msg.parts:
                    if isinstance(part, ToolReturnPart):
                        out.setdefault(part.tool_name, []).append(str(part.content))
                    elif isinstance(part, RetryPromptPart) and part.tool_name:
                        out.setdefault(part.tool_name, []).append(f"RETRY: {part.model_response()}")
        return out


def call(name: str, **args: Any) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    def step(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[ToolCallPart(name, json.dumps(args), tool_call_id=f"c-{uuid.uuid4().hex[:8]}")],
            usage=RequestUsage(input_tokens=100, output_tokens=10),
        )

    return step


def answer(
    output: dict[str, Any], usage: int = 100
) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    def step(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, json.dumps(output), tool_call_id="final")],
            usage=RequestUsage(input_tokens=usage, output_tokens=20),
        )

    return step


GOOD_ANSWER = {
    "summary": "The db pool was shrunk to 2 ten minutes before the alert; requests time out waiting.",
    "hypotheses": [
        {
            "title": "DB pool too small after commit abcdef1",
            "detail": "logs show pool exhausted",
            "confidence": 0.8,
            "evidence": ["changes:app@abcdef1", "logs:0", "metrics:error ratio"],
        }
    ],
    "proposed_fix": {"kind": "manual", "rationale": "revert abcdef1"},
    "open_questions": ["is traffic up too?"],
}


@dataclass
class Agentic:
    settings: Settings
    client: Client

    last_id: str = ""

    async def investigate(self, request: InvestigationRequest) -> Investigation:
        self.last_id = f"investigation-{uuid.uuid4().hex[:8]}"
        try:
            result: Investigation = await self.client.execute_workflow(
                "InvestigationAgentWorkflow",
                request,
                id=self.last_id,
                task_queue=self.settings.temporal.task_queue,
                result_type=Investigation,
                execution_timeout=timedelta(seconds=60),
            )
        except WorkflowFailureError as err:
            cause: BaseException | None = err.cause
            chain = []
            while cause is not None:
                chain.append(f"{type(cause).__name__}: {cause}")
                cause = cause.__cause__
            raise AssertionError(" <- ".join(chain)) from err
        return result


def _repo(path: Path) -> None:
    repo = git.Repo.init(path, initial_branch="main")
    (path / "config.yaml").write_text("pool: 10\n")
    repo.index.add(["config.yaml"])
    repo.index.commit("initial")
    (path / "config.yaml").write_text("pool: 2\n")
    repo.index.add(["config.yaml"])
    repo.index.commit("shrink db pool to 2")
    repo.close()


@pytest.fixture
async def agentic(
    temporal_address: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    """Start a worker whose LLM is the given script; yields a factory so each test picks its script."""
    stack: list[Any] = []
    repo_path = tmp_path / "app"
    repo_path.mkdir()
    _repo(repo_path)

    async def start(script: Script, evidence: dict[str, Any] | None = None, **llm: Any) -> Agentic:
        settings = make_settings(
            temporal_address,
            tmp_path / "data",
            investigation={
                "investigator": "llm",
                "llm": {"model": "scripted-model", "api_key": "sk-never-sent", **llm},
            },
            evidence={"change_repos": {"app": str(repo_path)}, **(evidence or {})},
        )
        client = await connect(settings.temporal)
        worker = build_worker(client, settings, llm_model=script.model())
        await worker.__aenter__()
        stack.append(worker)
        return Agentic(settings, client)

    yield start
    for worker in stack:
        await worker.__aexit__(None, None, None)


async def test_tool_calls_then_answer_become_an_llm_investigation(agentic: Callable[..., Any]) -> None:
    script = Script(
        [
            call("list_evidence"),
            call("read_evidence", source="logs"),
            call("git_log", repo="app", rev="HEAD", max_count=5),
            answer(GOOD_ANSWER),
        ]
    )
    ag = await agentic(script, prices={"scripted-model": PRICE})
    result = await ag.investigate(make_request())
    assert result.investigator == "llm:scripted-model"
    assert result.status == "ok"
    assert result.summary == GOOD_ANSWER["summary"]
    run = result.run
    assert run is not None and run.outcome == "ok" and run.stopped_by == ""
    assert run.tool_calls == {"git_log": 1, "list_evidence": 1, "read_evidence": 1}
    assert (run.requests, run.input_tokens, run.output_tokens) == (4, 400, 50)
    assert run.cost_usd == pytest.approx(0.45), "(400 + 50) tokens at $1000 per million"
    # Recorded in the incident store, where the per-day budget and /metrics read it.
    store = IncidentStore(ag.settings.store_url)
    spend = store.llm_spend("inc-1", START - timedelta(days=365))
    store.close()
    assert (spend.incident_cost, spend.day_runs) == (pytest.approx(0.45), 1)
    assert result.hypotheses[0].evidence == ["changes:app@abcdef1", "logs:0", "metrics:error ratio"]
    assert result.proposed_fix is not None and result.proposed_fix.kind == "manual"
    assert result.usage["requests"] == 4
    assert result.usage["input_tokens"] == 400
    returns = script.tool_returns()
    assert "logs: status=ok" in returns["list_evidence"][0]
    assert "[logs:0]" in returns["read_evidence"][0]
    assert "shrink db pool to 2" in returns["git_log"][0]

    # The history replays deterministically (pydantic-ai's loop runs in workflow code).
    history = await ag.client.get_workflow_handle(ag.last_id).fetch_history()
    replayer = Replayer(workflows=[InvestigationAgentWorkflow], plugins=[PydanticAIPlugin()])
    await replayer.replay_workflow(history)


async def test_budget_exhaustion_keeps_the_builtin_investigation(agentic: Callable[..., Any]) -> None:
    # A model that never stops calling tools: the request budget ends it, not a crash.
    script = Script([call("list_evidence")])
    ag = await agentic(script, max_requests=3)
    request = make_request()
    result = await ag.investigate(request)
    assert result.status == "budget_exhausted"
    assert result.investigator == "llm:scripted-model"
    assert request.prior is not None
    assert result.summary == request.prior.summary
    assert result.hypotheses == request.prior.hypotheses
    assert "stopped: request budget of 3 per run reached after 3 requests" in result.message
    assert len(script.seen) == 3
    assert result.usage["requests"] == 3
    assert result.run is not None and result.run.stopped_by == "requests"
    assert result.run.tool_calls == {"list_evidence": 3}


async def test_per_incident_budget_stops_a_model_that_keeps_calling_tools(
    agentic: Callable[..., Any],
) -> None:
    # Each request costs $0.11 (110 tokens at $1000 per million); the next one is estimated at
    # $0.12 (its input grows by the previous answer). After 4 requests $0.44 + $0.12 > $0.50.
    script = Script([call("list_evidence")])
    ag = await agentic(script, prices={"scripted-model": PRICE}, max_cost_per_incident=0.5)
    result = await ag.investigate(make_request())
    assert result.status == "budget_exhausted"
    assert result.summary.startswith("builtin:"), "the builtin investigation stays"
    assert result.message == (
        "The LLM investigator stopped: per-incident budget of $0.50 reached after 4 requests"
        " ($0.44 spent on this incident). The builtin investigation is shown instead."
    )
    assert len(script.seen) == 4, "no request past the budget was made"
    run = result.run
    assert run is not None and run.stopped_by == "incident_cost"
    assert run.cost_usd == pytest.approx(0.44) and run.tool_calls == {"list_evidence": 4}


async def test_tool_call_cap_stops_a_runaway_loop(agentic: Callable[..., Any]) -> None:
    script = Script([call("list_evidence")])
    ag = await agentic(script, max_tool_calls=2)
    result = await ag.investigate(make_request())
    assert result.status == "budget_exhausted"
    assert "stopped: tool-call budget of 2 per run reached after 3 requests" in result.message
    assert result.run is not None and result.run.tool_calls == {"list_evidence": 2}
    assert result.run.cost_usd is None, "no price for the model: its cost is unknown, not zero"


async def test_per_day_budget_refuses_a_run_after_an_earlier_one_spent_it(
    agentic: Callable[..., Any],
) -> None:
    # The first run's answer is bigger than its estimate ($0.11 + $0.32 = $0.43 > $0.30): a run
    # can overshoot by its last request, and the next run (another incident) then makes none.
    script = Script([call("list_evidence"), answer(GOOD_ANSWER, usage=300)])
    ag = await agentic(script, prices={"scripted-model": PRICE}, max_cost_per_day=0.3)
    first = await ag.investigate(make_request())
    assert first.status == "ok" and first.run is not None
    assert first.run.cost_usd == pytest.approx(0.43)
    request = make_request()
    request = request.model_copy(update={"view": request.view.model_copy(update={"id": "inc-2"})})
    second = await ag.investigate(request)
    assert second.status == "budget_exhausted"
    assert second.message.startswith(
        "The LLM investigator stopped: per-day budget of $0.30 reached before any request ($0.43 spent today"
    )
    assert second.run is not None and (second.run.requests, second.run.stopped_by) == (0, "day_cost")
    assert len(script.seen) == 2


async def test_a_cost_budget_that_cannot_be_read_is_not_guessed(agentic: Callable[..., Any]) -> None:
    store = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2"
    script = Script([answer(GOOD_ANSWER)])
    ag = await agentic(script, {"store_url": store}, prices={"scripted-model": PRICE}, max_cost_per_day=1.0)
    result = await ag.investigate(make_request())
    assert result.status == "failed" and result.summary.startswith("builtin:")
    assert result.message.startswith("The LLM investigator did not run: its cost budget could not be read")
    assert script.seen == [], "no request without a readable budget"


async def test_histories_from_before_budgets_replay() -> None:
    """A run recorded before budgets and telemetry (PATCH_TELEMETRY) replays on today's code."""
    text = (Path(__file__).parent / "histories" / "investigation-agent-v1.json").read_text()
    replayer = Replayer(workflows=[InvestigationAgentWorkflow], plugins=[PydanticAIPlugin()])
    await replayer.replay_workflow(WorkflowHistory.from_json("investigation-agent-v1", text))


async def test_token_budget_exhaustion(agentic: Callable[..., Any]) -> None:
    script = Script([answer(GOOD_ANSWER, usage=5000)])
    ag = await agentic(script, max_total_tokens=1000)
    result = await ag.investigate(make_request())
    assert result.status == "budget_exhausted"
    assert result.summary.startswith("builtin:")
    assert result.usage["input_tokens"] == 5000
    assert result.message == (
        "The LLM investigator stopped: token budget of 1,000 per run exceeded after 1 request"
        " (5,020 tokens used). The builtin investigation is shown instead."
    )
    assert result.run is not None and result.run.stopped_by == "tokens"


async def test_playbook_that_did_not_match_is_rejected(agentic: Callable[..., Any]) -> None:
    bad = {**GOOD_ANSWER, "proposed_fix": {"kind": "playbook", "playbook": "restart-everything"}}
    script = Script([answer(bad)])
    ag = await agentic(script)
    result = await ag.investigate(make_request(match="db-pool-resize"))
    assert result.status == "ok"
    assert result.proposed_fix is None
    assert result.matched_playbook == "db-pool-resize"
    assert "restart-everything" in result.open_questions[0]
    assert "did not match" in result.open_questions[0]

    # With no match at all, any playbook reference is rejected too.
    result = await ag.investigate(make_request(match=None))
    assert result.proposed_fix is None and "restart-everything" in result.open_questions[0]


async def test_the_matched_playbook_may_be_proposed(agentic: Callable[..., Any]) -> None:
    good = {
        **GOOD_ANSWER,
        "proposed_fix": {"kind": "playbook", "playbook": "db-pool-resize", "rationale": "fits"},
    }
    ag = await agentic(Script([answer(good)]))
    result = await ag.investigate(make_request(match="db-pool-resize"))
    assert result.proposed_fix is not None
    assert (result.proposed_fix.kind, result.proposed_fix.playbook) == ("playbook", "db-pool-resize")


async def test_hostile_model_output_comes_back_verbatim_as_data(agentic: Callable[..., Any]) -> None:
    text = " ".join(HOSTILE)
    hostile = {
        "summary": text,
        "hypotheses": [
            {"title": h, "detail": text, "confidence": 0.5, "evidence": ["logs:0"]} for h in HOSTILE
        ],
        "proposed_fix": {
            "kind": "patch",
            "repo": "app",
            "patch": f"--- a/x\n+++ b/x\n+{text}\n",
            "rationale": text,
        },
        "open_questions": HOSTILE,
    }
    ag = await agentic(Script([answer(hostile)]))
    result = await ag.investigate(make_request())
    assert result.summary == text
    assert [h.title for h in result.hypotheses] == HOSTILE
    assert all(h.detail == text for h in result.hypotheses)
    assert result.open_questions == HOSTILE
    assert result.proposed_fix is not None
    assert result.proposed_fix.kind == "patch"  # for human approval only; nothing applies it
    assert result.proposed_fix.patch == f"--- a/x\n+++ b/x\n+{text}\n"
    assert result.proposed_fix.rationale == text


async def test_tool_outputs_are_truncated_and_redacted(agentic: Callable[..., Any]) -> None:
    script = Script(
        [call("read_evidence", source="logs"), call("git_show", repo="app", rev="HEAD"), answer(GOOD_ANSWER)]
    )
    ag = await agentic(script, max_tool_output_chars=600)
    secret = "connecting with password=hunter2secret token ghp_abcdefghijklmnopqrstuvwxyz0123"
    result = await ag.investigate(make_request(logs=150, secret_line=secret))
    assert result.status == "ok"
    returns = script.tool_returns()
    logs = returns["read_evidence"][0]
    assert len(logs) <= 600
    assert "more characters truncated" in logs
    assert "hunter2secret" not in logs and "ghp_abcdefghijklmnopqrstuvwxyz0123" not in logs
    assert "[REDACTED]" in logs
    assert len(returns["git_show"][0]) <= 600


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("git_log", {"repo": "app", "rev": "--output=/tmp/selfheal-pwned"}),
        ("git_show", {"repo": "app", "rev": "HEAD", "path": "--output=/tmp/selfheal-pwned"}),
        ("git_diff", {"repo": "app", "base": "HEAD~1", "head": "-o/tmp/selfheal-pwned"}),
        ("git_log", {"repo": "../../etc", "rev": "HEAD"}),
        ("git_show", {"repo": "app", "rev": "HEAD", "path": "../../etc/passwd"}),
    ],
)
async def test_git_tools_refuse_option_injection(
    agentic: Callable[..., Any], tool: str, args: dict[str, Any], tmp_path: Path
) -> None:
    script = Script([call(tool, **args), answer(GOOD_ANSWER)])
    ag = await agentic(script)
    result = await ag.investigate(make_request())
    assert result.status == "ok"
    shown = script.tool_returns()[tool][0]
    assert "invalid" in shown or "unknown repository" in shown
    assert not Path("/tmp/selfheal-pwned").exists()


async def test_git_diff_between_real_commits(agentic: Callable[..., Any]) -> None:
    script = Script(
        [call("git_diff", repo="app", base="HEAD~1", head="HEAD", path="config.yaml"), answer(GOOD_ANSWER)]
    )
    ag = await agentic(script)
    await ag.investigate(make_request())
    diff = script.tool_returns()["git_diff"][0]
    assert "-pool: 10" in diff and "+pool: 2" in diff


async def test_offline_investigation_uses_only_evidence_tools(tmp_path: Path) -> None:
    script = Script([call("read_evidence", source="changes"), answer(GOOD_ANSWER)])
    seen_tools: list[str] = []

    async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen_tools[:] = [t.name for t in info.function_tools]
        return await script.model().function(messages, info)  # type: ignore[misc]

    settings = make_settings(
        "127.0.0.1:1", tmp_path / "data", investigation={"llm": {"model": "offline-model"}}
    )
    result = await investigate_offline(make_request(), FunctionModel(fn), llm_run_config(settings))
    assert result.investigator == "llm:offline-model"
    assert result.status == "ok"
    assert sorted(seen_tools) == ["list_evidence", "read_evidence"]
    changes = script.tool_returns()["read_evidence"][0]
    assert "changes:app@abcdef123456" in changes
    assert "  | +pool: 2" in changes, "the model reads the suspect change's diff and can cite it"


async def test_live_prometheus_and_loki_tools(agentic: Callable[..., Any], tmp_path: Path) -> None:
    """Live tools run as activities against a real Prometheus and a Loki fake, results redacted.

    Both servers start before this test's worker, so their blocking start-up stalls no worker."""
    with FakeLoki() as loki, prometheus_server(tmp_path / "prom", []) as prom_url:
        loki.add(
            START - timedelta(minutes=2),
            "ERROR pool exhausted api_key=sk-live-secret-value",
            service="checkout",
        )
        loki.add(
            START - timedelta(minutes=1),
            "ERROR pool exhausted api_key=sk-live-secret-value",
            service="checkout",
        )
        script = Script(
            [
                call("prometheus_query", promql="vector(21) * 2"),
                call(
                    "prometheus_range", promql="vector(7)", minutes_before=5, minutes_after=0, step_seconds=60
                ),
                call(
                    "loki_query", logql='{service="checkout"} |= "ERROR"', minutes_before=10, minutes_after=1
                ),
                call("prometheus_query", promql="sum(rate(nope[5m]"),
                answer(GOOD_ANSWER),
            ]
        )
        ag = await agentic(script, evidence={"prometheus_url": prom_url, "loki_url": loki.url})
        result = await ag.investigate(make_request())
    assert result.status == "ok"
    returns = script.tool_returns()
    assert returns["prometheus_query"][0].strip().endswith(" 42")
    assert "=7" in returns["prometheus_range"][0]
    logs = returns["loki_query"][0]
    assert "pool exhausted" in logs and "(x2)" in logs
    assert "sk-live-secret-value" not in logs
    assert "error: PrometheusError" in returns["prometheus_query"][1], "a bad query is an answer, not a crash"


async def test_patch_for_an_unknown_repository_is_dropped(agentic: Callable[..., Any]) -> None:
    fix = {"kind": "patch", "repo": "somewhere-else", "patch": "--- a/x\n+++ b/x\n", "rationale": "r"}
    ag = await agentic(Script([answer({**GOOD_ANSWER, "proposed_fix": fix})]))
    result = await ag.investigate(make_request())
    assert result.proposed_fix is None
    assert "somewhere-else" in result.open_questions[0]


def test_llm_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_INVESTIGATION__INVESTIGATOR", "llm")
    monkeypatch.setenv("SELFHEAL_INVESTIGATION__LLM__API_KEY", "sk-from-env")
    monkeypatch.setenv("SELFHEAL_INVESTIGATION__LLM__MODEL", "gpt-test")
    settings = load_settings(None)
    assert settings.investigation.investigator == "llm"
    assert settings.investigation.llm.api_key is not None
    assert settings.investigation.llm.api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(settings)

    monkeypatch.delenv("SELFHEAL_INVESTIGATION__LLM__API_KEY")
    with pytest.raises(ConfigError, match=r"investigation\.llm\.api_key is required"):
        load_settings(None)
    # A local OpenAI-compatible server may need no key.
    monkeypatch.setenv("SELFHEAL_INVESTIGATION__LLM__BASE_URL", "http://127.0.0.1:11434/v1")
    assert load_settings(None).investigation.llm.api_key is None

    # A cost budget needs the model's price: without one it could not be enforced.
    monkeypatch.setenv("SELFHEAL_INVESTIGATION__LLM__MAX_COST_PER_DAY", "5")
    with pytest.raises(ConfigError, match=r"investigation\.llm\.prices: no price for model 'gpt-test'"):
        load_settings(None)


async def test_unusable_answers_keep_the_builtin_investigation(agentic: Callable[..., Any]) -> None:
    # Confidence 5 is out of range: the model is asked to fix it, and after its retries the run
    # ends with the builtin investigation and why, not with a failed workflow.
    bad = {**GOOD_ANSWER, "hypotheses": [{"title": "x", "confidence": 5}]}
    script = Script([answer(bad)])
    ag = await agentic(script)
    result = await ag.investigate(make_request())
    assert result.status == "failed"
    assert result.summary.startswith("builtin:")
    assert "no usable answer" in result.message
    assert len(script.seen) == 3, "the first answer and two retries"
