"""The whole loop with `investigation.investigator: llm` against a fake OpenAI-compatible server.

An Alertmanager webhook opens an incident; the incident workflow runs the builtin investigation,
then InvestigationAgentWorkflow, whose model requests go over real HTTP through the openai SDK
to `tests/support/openai_fake.py`: tool calls, tool results sent back as `role: tool` messages,
then the final answer. The incident view must carry the LLM's investigation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from selfheal.worker import build_worker
from tests.support.app import ApiServer, Stack, make_settings
from tests.support.openai_fake import OUTPUT, FakeOpenAI
from tests.support.payloads import simple

ANSWER = {
    "summary": "Errors started with the alert; see the evidence.",
    "hypotheses": [
        {
            "title": "Upstream dependency failing",
            "confidence": 0.6,
            "evidence": ["alert:HighErrorRate", "bogus ref"],
        }
    ],
    "proposed_fix": {"kind": "playbook", "playbook": "not-a-matching-playbook"},
    "open_questions": ["{{ 7*7 }} $(id)"],
}


@asynccontextmanager
async def llm_stack(address: str, tmp_path: Path, fake: FakeOpenAI, api_key: str) -> AsyncIterator[Stack]:
    settings = make_settings(
        address,
        tmp_path / "data",
        investigation={
            "investigator": "llm",
            "llm": {
                "provider": "openai",
                "base_url": fake.url,
                "api_key": api_key,
                "model": "fake-gpt",
                "prices": {"fake-gpt": {"input_per_mtok": 2.5, "output_per_mtok": 10}},
            },
        },
    )
    client = await connect(settings.temporal)
    tracker = LocalTracker(settings.local_db_path)
    async with build_worker(client, settings, tracker):
        with ApiServer(settings) as api:
            async with api.client() as http:
                yield Stack(settings=settings, client=client, api=api, tracker=tracker, http=http)


async def _incident(stack: Stack, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    resp = await stack.post_alerts(simple())
    assert resp.status_code == 202, resp.text
    return await stack.wait_for(resp.json()["incident_id"], pred, timeout=90)


async def test_llm_investigation_over_the_openai_wire_protocol(temporal_address: str, tmp_path: Path) -> None:
    script = [[("list_evidence", {})], [("read_evidence", {"source": "changes"})], [(OUTPUT, ANSWER)]]
    with FakeOpenAI(script, api_key="sk-test-123", model="fake-gpt") as fake:
        async with llm_stack(temporal_address, tmp_path, fake, "sk-test-123") as stack:
            view = await _incident(
                stack,
                lambda v: (
                    (v.get("investigation") or {}).get("investigator", "") != "builtin"
                    and v.get("investigation") is not None
                ),
            )
    inv = view["investigation"]
    assert inv["investigator"] == "llm:fake-gpt"
    assert inv["status"] == "ok"
    assert inv["summary"] == ANSWER["summary"]
    assert inv["hypotheses"][0]["evidence"] == ["alert:HighErrorRate"], "unknown ref formats are dropped"
    assert inv["proposed_fix"] is None, "a playbook that did not match is never proposed"
    assert "not-a-matching-playbook" in inv["open_questions"][0]
    assert inv["open_questions"][1] == "{{ 7*7 }} $(id)"
    assert inv["usage"]["requests"] == 3
    assert inv["usage"]["input_tokens"] > 0
    # The run's telemetry: the tokens the server reported, priced from the settings' table.
    run = inv["run"]
    assert run["tool_calls"] == {"list_evidence": 1, "read_evidence": 1}
    assert (run["requests"], run["output_tokens"], run["outcome"]) == (3, 60, "ok")
    assert run["input_tokens"] == inv["usage"]["input_tokens"]
    assert run["cost_usd"] == pytest.approx((run["input_tokens"] * 2.5 + 60 * 10) / 1e6)

    # The real openai client sent the tool results back on the wire, with the tool definitions.
    assert len(fake.requests) == 3
    first = fake.requests[0]
    assert first["model"] == "fake-gpt"
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {"list_evidence", "read_evidence", "prometheus_query", "loki_query", "git_log"} <= offered
    assert "SRE" in first["messages"][0]["content"] or "site reliability" in first["messages"][0]["content"]
    tool_messages = fake.tool_messages()
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0_0", "call_1_0"]
    assert "status=" in tool_messages[0]["content"]
    assert "changes" in tool_messages[1]["content"]
    assert "sk-test-123" not in str(view), "the key never reaches the incident"


async def test_rejected_api_key_falls_back_to_the_builtin_investigation(
    temporal_address: str, tmp_path: Path
) -> None:
    with FakeOpenAI([[(OUTPUT, ANSWER)]], api_key="sk-right", model="fake-gpt") as fake:
        async with llm_stack(temporal_address, tmp_path, fake, "sk-wrong") as stack:
            view = await _incident(
                stack,
                lambda v: any(
                    e["message"].startswith("LLM investigation failed") for e in v.get("timeline", [])
                ),
            )
    # The incident keeps the builtin investigation (none, on a worker without the builtin activity).
    assert view["investigation"] is None or view["investigation"]["investigator"] == "builtin"
    failed = [e["message"] for e in view["timeline"] if e["message"].startswith("LLM investigation failed")]
    assert "401" in failed[0]
    assert fake.rejected == ["Bearer sk-wrong"], "an authentication error is not retried"
    assert fake.requests == []
