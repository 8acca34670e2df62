"""Human decisions through the API and the CLI: credited to whoever authenticated, approvers only,
audited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import structlog

from playbooks.loader import LIBRARY_DIR
from tests.support.app import Stack, user_token
from tests.support.payloads import simple


async def _escalated(stack: Stack) -> str:
    resp = await stack.post_alerts(simple())
    incident_id: str = resp.json()["incident_id"]
    await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    return incident_id


async def _decide(stack: Stack, incident_id: str, decision: str, **kw: Any) -> Any:
    """Decide as `oncall` (the stack's approver), or as `as_user`."""
    user = kw.pop("as_user", "oncall")
    async with stack.api.client(user=user) as http:
        return await http.post(f"/api/v1/incidents/{incident_id}/decision", json={"decision": decision, **kw})


async def test_approve_via_api_closes_and_comments(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    with structlog.testing.capture_logs() as logs:
        resp = await _decide(stack, incident_id, "approve", comment="known blip")
    assert resp.status_code == 200, resp.text
    assert resp.json()["decision"]["by"] == "oncall", "the decider is who authenticated"
    audit = [e for e in logs if e["event"] == "audit"]
    assert audit == [
        {
            "event": "audit",
            "log_level": "info",
            "action": "decision",
            "who": "oncall",
            "via": "token",
            "origin": "127.0.0.1",
            "outcome": "accepted",
            "incident_id": incident_id,
            "decision": "approve",
            "source": "API token",
        }
    ]
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "approved"
    assert any(
        e["kind"] == "decision" and e["message"].startswith("Approved by oncall via API token")
        for e in view["timeline"]
    ), view["timeline"]
    ticket = (await stack.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert any("Approved by oncall" in c["body"] and "known blip" in c["body"] for c in ticket["comments"])
    again = await _decide(stack, incident_id, "reject")
    assert again.status_code == 409
    assert "not awaiting" in again.json()["error"]


async def test_reject_via_api_naming_oneself(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    resp = await _decide(stack, incident_id, "reject", by="alice", as_user="alice")
    assert resp.status_code == 200
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "rejected" and view["decision"]["by"] == "alice"


async def test_admin_decides(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    resp = await _decide(stack, incident_id, "approve", as_user="root")
    assert resp.status_code == 200, resp.text
    assert resp.json()["decision"]["by"] == "root"


async def test_unknown_incident_and_bad_body(stack: Stack) -> None:
    assert (await _decide(stack, "0123456789ab-zzzzzz", "approve")).status_code == 404
    assert (await _decide(stack, "not-an-id", "approve")).status_code == 404
    incident_id = await _escalated(stack)
    bad = await _decide(stack, incident_id, "maybe")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "$.decision"
    empty_by = await _decide(stack, incident_id, "approve", by="")
    assert empty_by.status_code == 422 and empty_by.json()["errors"][0]["path"] == "$.by"


async def test_deciding_in_someone_elses_name_is_refused_and_audited(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    with structlog.testing.capture_logs() as logs:
        resp = await _decide(stack, incident_id, "approve", by="alice")
    assert resp.status_code == 403
    assert resp.json()["error"] == "by: authenticated as 'oncall': cannot act as 'alice'"
    (audit,) = [e for e in logs if e["event"] == "audit"]
    assert audit["who"] == "oncall" and audit["outcome"] == "refused" and audit["action"] == "decision"
    assert audit["incident_id"] == incident_id and audit["origin"] == "127.0.0.1"
    view = await stack.incident(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None
    (refused,) = [e for e in view["timeline"] if e["kind"] == "decision_refused"]
    assert refused["message"] == (
        "A decision to approve by oncall via API token did not count:"
        " authenticated as 'oncall': cannot act as 'alice'."
    )


async def test_viewer_reads_but_cannot_decide(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    async with stack.api.client(user="victor") as viewer:
        assert (await viewer.get(f"/api/v1/incidents/{incident_id}")).status_code == 200
        assert (await viewer.get("/api/v1/incidents")).status_code == 200
        assert (await viewer.get("/api/v1/remediation")).status_code == 200
    with structlog.testing.capture_logs() as logs:
        resp = await _decide(stack, incident_id, "approve", as_user="victor")
    assert resp.status_code == 403
    assert resp.json()["error"].startswith("user 'victor' is not an approver")
    (audit,) = [e for e in logs if e["event"] == "audit"]
    assert (audit["who"], audit["via"], audit["outcome"]) == ("victor", "token", "refused")
    view = await stack.incident(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None
    # on the timeline and the ticket, where the people deciding look
    (refused,) = [e for e in view["timeline"] if e["kind"] == "decision_refused"]
    assert "by victor via API token did not count: user 'victor' is not an approver" in refused["message"]
    assert (await _decide(stack, incident_id, "approve")).status_code == 200


async def test_webhook_token_and_strangers_cannot_read_or_decide(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    path = f"/api/v1/incidents/{incident_id}"
    async with stack.api.client(stack.api.webhook_token) as webhook:
        for resp in (
            await webhook.get("/api/v1/incidents"),
            await webhook.get(path),
            await webhook.get("/api/v1/remediation"),
            await webhook.post(f"{path}/decision", json={"decision": "approve"}),
            await webhook.post("/api/v1/remediation/pause", json={}),
        ):
            assert resp.status_code == 403, resp.text
            assert "webhook token only posts alerts" in resp.json()["error"]
    async with stack.api.client("shu_not-a-token") as stranger:
        resp = await stranger.post(f"{path}/decision", json={"decision": "approve"})
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
    async with stack.api.client(user_token("oncall")) as person:
        # A person's token is not Alertmanager's: it cannot post alerts.
        assert (await person.post("/api/v1/alerts", json=simple())).status_code == 401
    view = await stack.incident(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None


async def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI off the event loop: the in-process worker shares that loop."""
    env = dict(os.environ)
    env.update(
        SELFHEAL_URL=stack.api.url,
        SELFHEAL_API_TOKEN=user_token("oncall"),
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

    other = await _cli(stack, "approve", first, "--as", "carol")
    assert other.returncode == 1 and "403" in other.stderr and "cannot act as 'carol'" in other.stderr
    ok = await _cli(stack, "approve", first, "--comment", "fine")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{first}: approve by oncall accepted by the incident"
    view = await stack.wait_for(first, lambda v: v["outcome"] == "approved")
    assert view["decision"]["by"] == "oncall"
    ok = await _cli(stack, "reject", second, "--as", "oncall")
    assert ok.returncode == 0, ok.stderr
    await stack.wait_for(second, lambda v: v["outcome"] == "rejected")

    again = await _cli(stack, "approve", first)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: 409")
    missing = await _cli(stack, "incidents", "show", "0123456789ab-abcdef")
    assert missing.returncode == 1 and "404" in missing.stderr


async def test_cli_pause_and_resume(stack: Stack) -> None:
    paused = await _cli(stack, "pause", "--comment", "change freeze")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    state = (await stack.http.get("/api/v1/remediation")).json()
    assert (
        state["paused"] is True
        and state["paused_by"] == "oncall"
        and state["paused_reason"] == "change freeze"
    )
    async with stack.api.client(user="victor") as viewer:
        refused = await viewer.post("/api/v1/remediation/resume", json={})
    assert refused.status_code == 403 and "not an approver" in refused.json()["error"]
    as_other = await _cli(stack, "resume", "--as", "bob")
    assert as_other.returncode == 1 and "403" in as_other.stderr
    assert (await stack.http.get("/api/v1/remediation")).json()["paused"] is True
    with structlog.testing.capture_logs() as logs:
        resumed = await _cli(stack, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (await stack.http.get("/api/v1/remediation")).json()["paused"] is False
    assert [(e["action"], e["who"], e["outcome"]) for e in logs if e["event"] == "audit"] == [
        ("resume", "oncall", "accepted")
    ]


async def test_cli_without_an_api_token_says_how_to_get_one(stack: Stack, tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    env.update(SELFHEAL_URL=stack.api.url, SELFHEAL_DATA_DIR=str(tmp_path / "empty"))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "selfheal", "incidents", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "SELFHEAL_API_TOKEN" in result.stderr
    assert "selfheal token create" in result.stderr


@pytest.mark.settings(remediation={"include_library": True})
async def test_cli_approve_pins_the_plan_it_shows_and_a_stale_digest_is_refused(stack: Stack) -> None:
    """An approve-mode playbook's plan: `selfheal approve` prints it and sends its digest; a digest
    that is not the current plan's is refused (409), on the timeline and the ticket, nothing runs."""
    sample = json.loads((LIBRARY_DIR / "samples" / "node-systemd-unit-restart.json").read_text())
    sample["groupKey"] = sample["groupKey"] + os.urandom(4).hex()
    incident_id = (await stack.post_alerts(sample)).json()["incident_id"]
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    digest = view["proposal"]["digest"]
    assert len(digest) == 64 and view["proposal"]["playbook"] == "node-systemd-unit-restart"

    stale = await _cli(stack, "approve", incident_id, "--digest", "deadbeef")
    assert stale.returncode == 1 and "409" in stale.stderr and "needs a new approval" in stale.stderr
    view = await stack.wait_for(
        incident_id, lambda v: any(e["kind"] == "decision_refused" for e in v["timeline"])
    )
    assert view["stage"] == "awaiting_decision" and not view["remediations"]
    ticket = (await stack.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert any("plan deadbeef was approved" in c["body"] for c in ticket["comments"])

    ok = await _cli(stack, "approve", incident_id)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"plan {digest} on ") and "1. restart " in ok.stdout
    view = await stack.wait_for(incident_id, lambda v: bool(v["remediations"]))
    approved = next(e["message"] for e in view["timeline"] if e["kind"] == "decision")
    assert approved == f"Approved by oncall via API token: running the fix (plan {digest[:12]})"


def test_a_jira_approval_comment_may_pin_the_plan_by_its_leading_digits() -> None:
    from selfheal.api.jira_webhook import pinned_digest

    assert pinned_digest("3f2a9c1b0d4e the plan on the ticket") == ("3f2a9c1b0d4e", "the plan on the ticket")
    assert pinned_digest("3f2a9c1b") == ("3f2a9c1b", "")
    assert pinned_digest("known blip") == (None, "known blip")
    assert pinned_digest("3f2a9c1") == (None, "3f2a9c1")  # too short to pin anything
    assert pinned_digest("3F2A9C1B0D4E") == (None, "3F2A9C1B0D4E")
