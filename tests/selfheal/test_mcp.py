"""The MCP server through the SDK's own clients: `selfheal mcp` spawned over stdio against a
running stack, and streamable HTTP under the API. Every rule is the API's: a viewer reads, an
approver's decision is credited to them, a viewer's approval is refused and recorded."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from playbooks.loader import LIBRARY_DIR
from tests.support.app import Stack, user_token
from tests.support.payloads import simple, unique_group

SELFHEAL = Path(sys.executable).with_name("selfheal")
#: Library playbooks that need no repository load without any `remediation.repos`.
LIBRARY = pytest.mark.settings(remediation={"include_library": True})


@asynccontextmanager
async def stdio_session(stack: Stack, user: str) -> AsyncIterator[ClientSession]:
    """`selfheal mcp` as a subprocess, as an agent's MCP config would start it."""
    params = StdioServerParameters(
        command=str(SELFHEAL),
        args=["mcp"],
        env={"SELFHEAL_URL": stack.api.url, "SELFHEAL_TOKEN": user_token(user)},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    assert isinstance(result.structured_content, dict)
    assert json.loads(result.content[1].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def listed_until(
    session: ClientSession, filters: dict[str, Any], pred: Any, timeout: float = 10
) -> dict[str, Any]:
    """`list_incidents` until `pred(ids)` holds: visibility follows the workflow by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        listed = await call(session, "list_incidents", **filters)
        if pred({i["id"] for i in listed["incidents"]}) or time.monotonic() > deadline:
            assert pred({i["id"] for i in listed["incidents"]}), listed
            return listed
        await asyncio.sleep(0.1)


async def escalated(stack: Stack, group: str, **labels: str) -> str:
    resp = await stack.post_alerts(simple(group=group, **labels))
    incident_id: str = resp.json()["incident_id"]
    await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    return incident_id


@LIBRARY
async def test_stdio_tools_against_a_running_stack(stack: Stack) -> None:
    service = f"svc-{unique_group()}"
    first = await escalated(stack, unique_group(), service=service)
    second = await escalated(stack, unique_group(), service=service)

    async with stdio_session(stack, "victor") as viewer:
        tools = {t.name for t in (await viewer.list_tools()).tools}
        assert tools == {
            "list_incidents",
            "show_incident",
            "similar_incidents",
            "match_playbooks",
            "plan_playbooks",
            "approve_incident",
            "reject_incident",
        }
        filters = {"stage": "awaiting_decision", "service": service, "alertname": "HighErrorRate"}
        listed = await listed_until(viewer, filters, lambda ids: ids == {first, second})
        assert listed["count"] == 2
        assert not (await call(viewer, "list_incidents", **{**filters, "alertname": "Other"}))["incidents"]
        shown = await call(viewer, "show_incident", incident_id=first)
        assert shown["incident"]["id"] == first and shown["incident"]["service"] == service
        assert shown["incident"]["evidence"] is not None and shown["incident"]["timeline"]
        assert "**Service:** " + service in shown["page"], shown["page"][:500]

        refused = await viewer.call_tool("approve_incident", {"incident_id": first})
        assert refused.is_error
        assert text(refused).endswith(
            "refused (HTTP 403): user 'victor' is not an approver (auth.users.victor.roles: [approver])"
        )
        bad = await viewer.call_tool("show_incident", {"incident_id": "../../etc"})
        assert bad.is_error and "incident_id" in text(bad) and "not an incident id" in text(bad)
        too_many = await viewer.call_tool("list_incidents", {"limit": 1000})
        assert too_many.is_error and "limit" in text(too_many)
    view = await stack.incident(first)
    assert view["decision"] is None and view["stage"] == "awaiting_decision"
    (entry,) = [e for e in view["timeline"] if e["kind"] == "decision_refused"]
    assert "by victor" in entry["message"]

    async with stdio_session(stack, "oncall") as approver:
        decided = await call(approver, "approve_incident", incident_id=first, comment="via MCP")
        assert decided["decision"]["by"] == "oncall" and decided["decision"]["comment"] == "via MCP"
        closed = await stack.wait_for(first, lambda v: v["stage"] == "closed")
        assert closed["decision"]["by"] == "oncall" and closed["outcome"] == "approved"

        similar = await call(approver, "similar_incidents", incident_id=second)
        assert similar["similar"][0]["incident_id"] == first
        assert similar["similar"][0]["outcome"] == "approved"

        matched = await call(approver, "match_playbooks", incident_id=second)
        (alert,) = matched["alerts"]
        assert alert["match"]["playbook"] is None and alert["match"]["alertname"] == "HighErrorRate"

        sample = json.loads((LIBRARY_DIR / "samples" / "node-systemd-unit-restart.json").read_text())
        labels = sample["alerts"][0]["labels"]
        planned = await call(approver, "plan_playbooks", alert={"labels": labels})
        (alert,) = planned["alerts"]
        assert alert["match"]["playbook"] == "node-systemd-unit-restart"
        assert alert["match"]["plan"]["fix"], alert["match"]["plan"]
        matched = await call(approver, "match_playbooks", alert={"labels": labels})
        assert matched["alerts"][0]["match"]["plan"] is None
        assert matched["alerts"][0]["match"]["params"] == alert["match"]["params"]

        both = await approver.call_tool(
            "match_playbooks", {"incident_id": second, "alert": {"labels": labels}}
        )
        assert both.is_error and "either incident_id" in text(both)
        no_name = await approver.call_tool("plan_playbooks", {"alert": {"labels": {"job": "x"}}})
        assert no_name.is_error and "alertname: required" in text(no_name)


@asynccontextmanager
async def http_session(stack: Stack, user: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {user_token(user)}"} if user else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(f"{stack.api.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_streamable_http_under_the_api_acts_as_the_caller(stack: Stack) -> None:
    incident_id = await escalated(stack, unique_group())
    with pytest.raises(ExceptionGroup) as refused:
        async with http_session(stack, None):
            pass
    assert refused.group_contains(MCPError, depth=2)
    async with httpx2.AsyncClient() as raw:  # what the SDK client was answered
        resp = await raw.post(f"{stack.api.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert resp.status_code == 401 and resp.json()["error"].startswith("missing or invalid credentials")
    async with http_session(stack, "victor") as viewer:
        shown = await call(viewer, "show_incident", incident_id=incident_id)
        assert shown["incident"]["id"] == incident_id
        denied = await viewer.call_tool("approve_incident", {"incident_id": incident_id})
        assert denied.is_error and "refused (HTTP 403): user 'victor' is not an approver" in text(denied)
    async with http_session(stack, "alice") as approver:
        decided = await call(approver, "reject_incident", incident_id=incident_id, comment="over HTTP")
        assert decided["decision"]["by"] == "alice" and decided["decision"]["decision"] == "reject"
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "rejected"
    assert any(e["kind"] == "decision_refused" and "by victor" in e["message"] for e in view["timeline"])


@LIBRARY
async def test_approve_pins_the_plan_it_read_and_a_stale_digest_is_refused(stack: Stack) -> None:
    """An agent approves with the digest of the plan it read: a digest that is not the current
    plan's is refused by the API (409) and nothing runs; a malformed one never leaves the tool;
    the right one runs that plan."""
    sample = json.loads((LIBRARY_DIR / "samples" / "node-systemd-unit-restart.json").read_text())
    sample["groupKey"] = sample["groupKey"] + unique_group()
    incident_id = (await stack.post_alerts(sample)).json()["incident_id"]
    await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    async with http_session(stack, "oncall") as approver:
        shown = await call(approver, "show_incident", incident_id=incident_id)
        digest = shown["incident"]["proposal"]["digest"]
        assert len(digest) == 64

        stale = await approver.call_tool(
            "approve_incident", {"incident_id": incident_id, "plan_digest": "deadbeef"}
        )
        assert stale.is_error and "conflict (HTTP 409)" in text(stale), text(stale)
        assert "needs a new approval" in text(stale)
        malformed = await approver.call_tool(
            "approve_incident", {"incident_id": incident_id, "plan_digest": "DEADBEEF; drop"}
        )
        assert malformed.is_error and "plan_digest" in text(malformed), text(malformed)
        assert "HTTP" not in text(malformed)  # refused by the tool, never sent
        view = await stack.incident(incident_id)
        assert view["stage"] == "awaiting_decision" and view["decision"] is None
        assert not view["remediations"]
        assert [e for e in view["timeline"] if e["kind"] == "decision_refused"]

        decided = await call(approver, "approve_incident", incident_id=incident_id, plan_digest=digest[:12])
        assert decided["decision"]["plan_digest"] == digest[:12]
    view = await stack.wait_for(incident_id, lambda v: bool(v["remediations"]))
    approved = next(e["message"] for e in view["timeline"] if e["kind"] == "decision")
    assert approved.endswith(f"(plan {digest[:12]})"), approved
