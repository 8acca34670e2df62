"""Human decisions through the API and the CLI, with approver policy."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support.app import Stack
from tests.support.payloads import simple


async def _escalated(stack: Stack) -> str:
    resp = await stack.post_alerts(simple())
    incident_id: str = resp.json()["incident_id"]
    await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    return incident_id


async def _decide(stack: Stack, incident_id: str, decision: str, by: str, **kw: Any) -> Any:
    return await stack.http.post(
        f"/api/v1/incidents/{incident_id}/decision", json={"decision": decision, "by": by, **kw}
    )


async def test_approve_via_api_closes_and_comments(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    resp = await _decide(stack, incident_id, "approve", "alice", comment="known blip")
    assert resp.status_code == 200, resp.text
    assert resp.json()["decision"]["by"] == "alice"
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "approved"
    ticket = (await stack.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert any("Approved by alice" in c["body"] and "known blip" in c["body"] for c in ticket["comments"])
    again = await _decide(stack, incident_id, "reject", "alice")
    assert again.status_code == 409
    assert "not awaiting" in again.json()["error"]


async def test_reject_via_api(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    resp = await _decide(stack, incident_id, "reject", "bob")
    assert resp.status_code == 200
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "rejected"


async def test_unknown_incident_and_bad_body(stack: Stack) -> None:
    assert (await _decide(stack, "0123456789ab-zzzzzz", "approve", "a")).status_code == 404
    assert (await _decide(stack, "not-an-id", "approve", "a")).status_code == 404
    incident_id = await _escalated(stack)
    bad = await _decide(stack, incident_id, "maybe", "a")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "$.decision"


@pytest.mark.settings(approvers=["alice"])
async def test_unauthorised_approver_is_refused(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    resp = await _decide(stack, incident_id, "approve", "mallory")
    assert resp.status_code == 403
    assert "mallory" in resp.json()["error"]
    view = await stack.incident(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None
    assert (await _decide(stack, incident_id, "approve", "alice")).status_code == 200


@pytest.mark.settings(env="production")
async def test_production_without_approvers_refuses_decisions(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    resp = await _decide(stack, incident_id, "approve", "alice")
    assert resp.status_code == 403
    assert "no approvers configured" in resp.json()["error"]


async def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI off the event loop: the in-process worker shares that loop."""
    env = dict(os.environ)
    env.update(
        SELFHEAL_URL=stack.api.url,
        SELFHEAL_WEBHOOK_TOKEN=stack.settings.webhook_token.get_secret_value(),  # type: ignore[union-attr]
    )
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "selfheal", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_list_show_approve_reject(stack: Stack) -> None:
    first = await _escalated(stack)
    second = await _escalated(stack)
    listed = await _cli(stack, "incidents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert first in listed.stdout and second in listed.stdout
    shown = await _cli(stack, "incidents", "show", first, "--json")
    assert shown.returncode == 0 and '"awaiting_decision"' in shown.stdout
    human = await _cli(stack, "incidents", "show", first)
    assert "timeline" in human.stdout and "escalated" in human.stdout
    page = await _cli(stack, "incidents", "show", first, "--page")
    assert page.returncode == 0, page.stderr
    ticket = (await stack.http.get(f"/api/v1/tickets/{json.loads(shown.stdout)['ticket']['key']}")).json()
    assert page.stdout.startswith(f"## selfheal incident {first}") and "## Timeline" in page.stdout
    assert "## Proposed fix" in ticket["description"], "the ticket carries the same page"
    wiki = await _cli(stack, "incidents", "show", first, "--page", "--format", "wiki")
    assert wiki.returncode == 0 and wiki.stdout.startswith("h2. selfheal incident")
    adf = await _cli(stack, "incidents", "show", first, "--page", "--format", "adf")
    assert json.loads(adf.stdout)["type"] == "doc"
    bad = await _cli(stack, "incidents", "show", first, "--page", "--format", "html")
    assert bad.returncode == 2 and "--format" in bad.stderr

    ok = await _cli(stack, "approve", first, "--as", "carol", "--comment", "fine")
    assert ok.returncode == 0, ok.stderr
    await stack.wait_for(first, lambda v: v["outcome"] == "approved")
    ok = await _cli(stack, "reject", second, "--as", "carol")
    assert ok.returncode == 0, ok.stderr
    await stack.wait_for(second, lambda v: v["outcome"] == "rejected")

    again = await _cli(stack, "approve", first, "--as", "carol")
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: 409")
    missing = await _cli(stack, "incidents", "show", "0123456789ab-abcdef")
    assert missing.returncode == 1 and "404" in missing.stderr


@pytest.mark.settings(approvers=["alice"])
async def test_cli_pause_and_resume(stack: Stack) -> None:
    paused = await _cli(stack, "pause", "--as", "bob", "--comment", "change freeze")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    state = (await stack.http.get("/api/v1/remediation")).json()
    assert (
        state["paused"] is True and state["paused_by"] == "bob" and state["paused_reason"] == "change freeze"
    )
    refused = await _cli(stack, "resume", "--as", "bob")
    assert refused.returncode == 1 and "403" in refused.stderr
    assert (await stack.http.get("/api/v1/remediation")).json()["paused"] is True
    resumed = await _cli(stack, "resume", "--as", "alice")
    assert resumed.returncode == 0, resumed.stderr
    assert (await stack.http.get("/api/v1/remediation")).json()["paused"] is False
