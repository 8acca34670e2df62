"""The loop against Jira: the real `jira` client talking to the REST v2 fake over HTTP.

Covers the worker killed mid-create (still one ticket), decisions made in Jira by comment or
transition through the signed webhook, refusals, and harmless redeliveries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.jira.tracker import JiraTracker
from connectors.temporal import connect
from selfheal.settings import Settings
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.jira import JiraFake, payload
from tests.support.payloads import simple

SECRET = "jira-shared-secret"


@pytest.fixture
def jira() -> Iterator[JiraFake]:
    with JiraFake(users={"bot": "bot-token"}, people=["alice", "mallory", "eve"]) as fake:
        yield fake


def jira_id(fake: JiraFake, user: str) -> str:
    """How selfheal's config names a Jira person: Cloud accountId, Data Center username."""
    return fake.account_id(user) if fake.cloud else user


def jira_settings(address: str, tmp_path: Path, fake: JiraFake, **extra: Any) -> Settings:
    tracker: dict[str, Any] = {
        "kind": "jira",
        "webhook_secret": SECRET,
        "bot_accounts": [jira_id(fake, "bot")],
        "jira": {
            "url": fake.url,
            "project": "OPS",
            "user": "bot",
            "api_token": "bot-token",
            "cloud": fake.cloud,
        },
        **extra.pop("tracker", {}),
    }
    return make_settings(
        address,
        tmp_path / "data",
        auth={
            "users": {
                "alice": {"roles": ["approver"], "jira": jira_id(fake, "alice")},
                "mallory": {"roles": ["viewer"], "jira": jira_id(fake, "mallory")},
            }
        },
        tracker=tracker,
        **extra,
    )


@dataclass
class JiraStack:
    settings: Settings
    fake: JiraFake
    api: ApiServer
    http: httpx.AsyncClient

    async def escalated(self) -> tuple[str, str]:
        resp = await self.http.post("/api/v1/alerts", json=simple())
        assert resp.status_code == 202, resp.text
        incident_id: str = resp.json()["incident_id"]
        view = await self.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
        return incident_id, view["ticket"]["key"]

    async def wait(self, incident_id: str, pred: Any, timeout: float = 30) -> dict[str, Any]:
        return await wait_for_incident(self.http, incident_id, pred, timeout)

    async def view(self, incident_id: str) -> dict[str, Any]:
        view: dict[str, Any] = (await self.http.get(f"/api/v1/incidents/{incident_id}")).json()
        return view

    def last_answer(self) -> dict[str, Any]:
        """What selfheal answered the last webhook delivery."""
        answer = self.fake.deliveries[-1].answer
        assert answer is not None
        parsed: dict[str, Any] = json.loads(answer)
        return parsed


@asynccontextmanager
async def running_stack(settings: Settings, jira: JiraFake) -> AsyncIterator[JiraStack]:
    client = await connect(settings.temporal)
    assert settings.tracker.jira is not None
    async with build_worker(client, settings, JiraTracker(settings.tracker.jira)):
        with ApiServer(settings) as api:
            jira.configure_webhook(f"{api.url}/api/v1/jira/webhook", secret=SECRET)
            async with api.client() as http:
                yield JiraStack(settings, jira, api, http)


@pytest.fixture
async def jstack(temporal_address: str, tmp_path: Path, jira: JiraFake) -> AsyncIterator[JiraStack]:
    async with running_stack(jira_settings(temporal_address, tmp_path, jira), jira) as stack:
        yield stack


async def test_ticket_in_jira_with_label_priority_link(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    issue = jstack.fake.issues[key]
    assert f"selfheal-{incident_id}" in issue["fields"]["labels"]
    assert "selfheal-escalated" in issue["fields"]["labels"]
    assert issue["fields"]["priority"]["name"] == "Highest"
    assert jstack.fake.comments(key)[0]["body"].startswith("Escalated")
    assert len(jstack.fake.remote_links(key)) <= 1
    assert len(jstack.fake.issues) == 1


async def test_approve_by_jira_comment_and_redelivery_is_harmless(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    status = await asyncio.to_thread(
        jstack.fake.add_comment_as, key, "alice", "/selfheal approve\nrollback is fine"
    )
    assert status == 200
    view = await jstack.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "approved"
    assert view["decision"]["by"] == "alice" and view["decision"]["source"] == "jira"
    assert view["decision"]["comment"] == "rollback is fine"
    comments_before = len(jstack.fake.comments(key))
    again = await asyncio.to_thread(jstack.fake.redeliver_last)
    assert again == 200
    assert len(jstack.fake.comments(key)) == comments_before
    view = (await jstack.http.get(f"/api/v1/incidents/{incident_id}")).json()
    assert [e["kind"] for e in view["timeline"]].count("decision") == 1


async def test_redelivery_while_open_is_deduplicated_by_update_id(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "alice", "/selfheal reject") == 200
    assert await asyncio.to_thread(jstack.fake.redeliver_last) == 200
    view = await jstack.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "rejected"
    assert [e["kind"] for e in view["timeline"]].count("decision") == 1


async def test_reject_by_transition(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.transition_as, key, "alice", "Rejected") == 200
    view = await jstack.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "rejected"


async def test_non_approver_and_unknown_user_are_refused_with_a_ticket_comment(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "mallory", "/selfheal approve") == 200
    assert jstack.last_answer()["status"] == "refused"
    # Jira redelivers the refused comment: the explanation is not written twice.
    assert await asyncio.to_thread(jstack.fake.redeliver_last) == 200
    assert len([c for c in jstack.fake.comments(key) if "did not count" in c["body"]]) == 1
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "eve", "/selfheal reject no") == 200
    assert jstack.last_answer()["status"] == "refused"
    assert await asyncio.to_thread(jstack.fake.transition_as, key, "mallory", "Approved") == 200
    assert jstack.last_answer()["status"] == "refused"
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "bot", "/selfheal approve") == 200
    assert jstack.last_answer()["status"] == "ignored"
    assert (
        await asyncio.to_thread(jstack.fake.add_comment_as, key, "alice", "I will /selfheal approve later")
        == 200
    )
    assert jstack.last_answer()["status"] == "ignored"
    view = await jstack.view(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None
    refusals = [c["body"] for c in jstack.fake.comments(key) if "did not count" in c["body"]]
    assert len(refusals) == 3
    assert "is not an approver" in refusals[0] and "mallory" in refusals[0]
    assert "no selfheal user has this Jira identity" in refusals[1]


async def test_an_edited_comment_is_never_a_decision(jstack: JiraStack) -> None:
    """Data Center sends comment_updated and issue_comment_edited; neither counts, whoever edits."""
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "alice", "looking into it") == 200
    comment_id = jstack.fake.comments(key)[-1]["id"]
    # mallory (a viewer) turns alice's (an approver's) old comment into an approval
    assert (
        await asyncio.to_thread(jstack.fake.edit_comment_as, key, comment_id, "mallory", "/selfheal approve")
        == 200
    )
    # and alice editing her own comment into one does not count either: decisions are new comments
    assert (
        await asyncio.to_thread(jstack.fake.edit_comment_as, key, comment_id, "alice", "/selfheal reject")
        == 200
    )
    edits = [d for d in jstack.fake.deliveries if d.event["webhookEvent"] != "comment_created"]
    assert {(d.event["webhookEvent"], d.event.get("issue_event_type_name")) for d in edits} == {
        ("comment_updated", None),
        ("jira:issue_updated", "issue_comment_edited"),
    }
    assert all(d.status == 200 and json.loads(d.answer or "{}")["status"] == "ignored" for d in edits)
    view = await jstack.view(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None


async def test_a_deleted_comment_is_nothing(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "eve", "/selfheal approve") == 200
    comment_id = jstack.fake.comments(key)[-2]["id"]  # the refusal explanation came after it
    assert await asyncio.to_thread(jstack.fake.delete_comment_as, key, comment_id, "alice") == 200
    assert jstack.last_answer()["status"] == "ignored"
    view = await jstack.view(incident_id)
    assert view["stage"] == "awaiting_decision" and view["decision"] is None


async def test_cloud_comment_approval_reaches_the_incident(temporal_address: str, tmp_path: Path) -> None:
    """Cloud: a trimmed issue without labels, people by accountId only."""
    with JiraFake(users={"bot": "bot-token"}, people=["alice"], cloud=True) as fake:
        async with running_stack(jira_settings(temporal_address, tmp_path, fake), fake) as stack:
            incident_id, key = await stack.escalated()
            status = await asyncio.to_thread(fake.add_comment_as, key, "alice", "/selfheal approve\nfine")
            assert status == 200, fake.deliveries[-1].answer
            assert "labels" not in fake.deliveries[-1].event["issue"]["fields"]
            assert "name" not in fake.deliveries[-1].event["comment"]["author"]
            view = await stack.wait(incident_id, lambda v: v["stage"] == "closed")
            assert view["outcome"] == "approved"
            assert view["decision"]["by"] == "alice" and view["decision"]["comment"] == "fine"


async def test_data_center_comment_without_issue_reaches_the_incident(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "alice", "/selfheal reject") == 200
    sent = jstack.fake.deliveries[-1].event
    assert "issue" not in sent and sent["comment"]["author"]["key"] != "alice"
    view = await jstack.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "rejected" and view["decision"]["by"] == "alice"


def _signed(raw: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()}


async def test_webhook_signature_required(jstack: JiraStack) -> None:
    incident_id, key = await jstack.escalated()
    issue_id = jstack.fake.issues[key]["id"]
    event = payload("dc_comment_created")
    event["comment"]["self"] = f"{jstack.fake.url}/rest/api/2/issue/{issue_id}/comment/777"
    event["comment"]["id"] = "777"
    raw = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=jstack.api.url) as anon:
        unsigned = await anon.post("/api/v1/jira/webhook", content=raw)
        assert unsigned.status_code == 401
        forged = await anon.post(
            "/api/v1/jira/webhook", content=raw, headers={"X-Hub-Signature": "sha256=" + "0" * 64}
        )
        assert forged.status_code == 401
        wrong_token = await anon.post("/api/v1/jira/webhook?token=nope", content=raw)
        assert wrong_token.status_code == 401
        # The HMAC key is never a URL token: it would end up in access logs.
        secret_in_url = await anon.post(f"/api/v1/jira/webhook?token={SECRET}", content=raw)
        assert secret_in_url.status_code == 401
        assert (await jstack.view(incident_id))["stage"] == "awaiting_decision"
        signed = await anon.post("/api/v1/jira/webhook", content=raw, headers=_signed(raw))
        assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "decided"
        # The same comment again (no delivery id) is the same update: answered, not applied twice.
        same = await anon.post("/api/v1/jira/webhook", content=raw, headers=_signed(raw))
        assert same.status_code == 200 and same.json()["status"] == "decided"
        event["comment"]["body"] = "/selfheal reject changed my mind"
        event["comment"]["id"] = "778"
        other = json.dumps(event).encode()
        answered = await anon.post("/api/v1/jira/webhook", content=other, headers=_signed(other))
        assert answered.status_code == 200 and answered.json()["status"] == "not_awaiting"
        unknown = dict(
            event, comment=dict(event["comment"], self=f"{jstack.fake.url}/rest/api/2/issue/99999/comment/1")
        )
        raw_unknown = json.dumps(unknown).encode()
        ignored = await anon.post("/api/v1/jira/webhook", content=raw_unknown, headers=_signed(raw_unknown))
        assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    view = await jstack.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "approved"
    assert [e["kind"] for e in view["timeline"]].count("decision") == 1


async def test_url_token_only_when_its_own_secret_is_configured(
    temporal_address: str, tmp_path: Path, jira: JiraFake
) -> None:
    settings = jira_settings(
        temporal_address, tmp_path, jira, tracker={"webhook_secret": None, "webhook_url_token": "url-only"}
    )
    async with running_stack(settings, jira) as stack:
        incident_id, key = await stack.escalated()
        jira.configure_webhook(f"{stack.api.url}/api/v1/jira/webhook", token_in_url="nope")
        assert await asyncio.to_thread(jira.add_comment_as, key, "alice", "/selfheal approve") == 401
        jira.configure_webhook(f"{stack.api.url}/api/v1/jira/webhook", secret=SECRET)
        assert await asyncio.to_thread(jira.add_comment_as, key, "alice", "/selfheal approve") == 401
        assert (await stack.view(incident_id))["stage"] == "awaiting_decision"
        jira.configure_webhook(f"{stack.api.url}/api/v1/jira/webhook", token_in_url="url-only")
        assert await asyncio.to_thread(jira.add_comment_as, key, "alice", "/selfheal approve") == 200
        view = await stack.wait(incident_id, lambda v: v["stage"] == "closed")
        assert view["outcome"] == "approved"


@pytest.mark.timeout(180)
async def test_worker_killed_during_ticket_create_still_one_ticket(
    temporal_address: str, tmp_path: Path, jira: JiraFake
) -> None:
    settings = jira_settings(temporal_address, tmp_path, jira, incident={"activity_timeout_seconds": 3})
    jira_cfg = settings.tracker.jira
    assert jira_cfg is not None
    env = dict(os.environ)
    env.update(
        SELFHEAL_ENV="dev",
        SELFHEAL_DATA_DIR=str(tmp_path / "data"),
        SELFHEAL_TEMPORAL__ADDRESS=temporal_address,
        SELFHEAL_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        SELFHEAL_TRACKER__KIND="jira",
        SELFHEAL_TRACKER__JIRA__URL=jira.url,
        SELFHEAL_TRACKER__JIRA__PROJECT="OPS",
        SELFHEAL_TRACKER__JIRA__USER="bot",
        SELFHEAL_TRACKER__JIRA__API_TOKEN="bot-token",
    )

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")
        return subprocess.Popen(
            [sys.executable, "-m", "selfheal", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    held = jira.hold_create()
    first = start_worker("worker1")
    second: subprocess.Popen[bytes] | None = None
    try:
        with ApiServer(settings) as api:
            async with api.client() as http:
                resp = await http.post("/api/v1/alerts", json=simple())
                assert resp.status_code == 202
                incident_id = resp.json()["incident_id"]
                key = await asyncio.to_thread(held.wait_created, 60)
                # The issue exists in Jira but the worker never hears back: kill it right there.
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(10)
                held.release()
                second = start_worker("worker2")
                deadline = asyncio.get_running_loop().time() + 90
                view: dict[str, Any] = {}
                while asyncio.get_running_loop().time() < deadline:
                    view = (await http.get(f"/api/v1/incidents/{incident_id}")).json()
                    if view.get("stage") == "awaiting_decision":
                        break
                    await asyncio.sleep(0.2)
                assert view.get("stage") == "awaiting_decision", view
                assert view["ticket"]["key"] == key
                assert list(jira.issues) == [key]
                assert jira.count("POST", r"/rest/api/2/issue") == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


async def test_comment_sent_as_two_events_is_one_decision(jstack: JiraStack) -> None:
    """Server/DC sends comment_created and an issue_updated carrying the same comment."""
    jstack.fake.configure_webhook(
        f"{jstack.api.url}/api/v1/jira/webhook", secret=SECRET, comment_also_updates=True
    )
    incident_id, key = await jstack.escalated()
    assert await asyncio.to_thread(jstack.fake.add_comment_as, key, "alice", "/selfheal approve") == 200
    view = await jstack.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "approved"
    assert [e["kind"] for e in view["timeline"]].count("decision") == 1
    decisions = [c for c in jstack.fake.comments(key) if c["body"].startswith("Approved by alice")]
    assert len(decisions) == 1
    assert len(jstack.fake.deliveries) >= 2


async def test_jira_v3_page_and_comments_are_adf_through_the_loop(
    temporal_address: str, tmp_path: Path
) -> None:
    """With `api_version: 3` (Cloud only: Server/DC has no REST v3) the ticket page and selfheal's
    comments go to REST v3 as ADF (the fake refuses a string there), and a decision by comment still
    closes the incident with the page final."""
    with JiraFake(users={"bot": "bot-token"}, people=["alice", "mallory"], cloud=True) as jira:
        await _v3_through_the_loop(temporal_address, tmp_path, jira)


async def _v3_through_the_loop(temporal_address: str, tmp_path: Path, jira: JiraFake) -> None:
    from pages.render import adf_plain_text
    from tests.support.jira import adf_problem

    settings = jira_settings(temporal_address, tmp_path, jira)
    assert settings.tracker.jira is not None
    settings.tracker.jira.api_version = 3
    client = await connect(settings.temporal)
    async with build_worker(client, settings, JiraTracker(settings.tracker.jira)):
        with ApiServer(settings) as api:
            jira.configure_webhook(f"{api.url}/api/v1/jira/webhook", secret=SECRET)
            async with api.client() as http:
                stack = JiraStack(settings, jira, api, http)
                incident_id, key = await stack.escalated()
                page = jira.issue_v3(key)["fields"]["description"]
                assert adf_problem(page) is None
                heads = [adf_plain_text(n) for n in page["content"] if n["type"] == "heading"]
                assert heads[0] == f"selfheal incident {incident_id}" and "Investigation" in heads
                comments = jira.comments(key, v3=True)
                assert adf_plain_text(comments[0]["body"]).startswith("Escalated")
                assert jira.count("POST", r"^/rest/api/2/issue") == 0, "nothing written through v2"
                status = await asyncio.to_thread(jira.add_comment_as, key, "alice", "/selfheal approve")
                assert status == 200
                await stack.wait(incident_id, lambda v: v["stage"] == "closed")
                final = jira.issue_v3(key)["fields"]["description"]
                assert adf_problem(final) is None and "Decision: approve by alice" in adf_plain_text(final)
                assert len(jira.issues) == 1
