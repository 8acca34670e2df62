"""Reading Jira's webhook events as Cloud and Data Center send them (the documented payloads in
tests/support/jira/payloads), checking signatures, and the fake sending exactly those shapes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest

from connectors.jira.settings import JiraSettings
from connectors.jira.webhook import EventKind, read_event, signature_ok, url_token_ok
from models.incident import DecisionKind
from tests.support.jira import JiraFake, WebhookReceiver, payload

CLOUD_ALICE = "5b10ac8d82e05b22cc7d4ef5"
CLOUD_MALLORY = "712020:3cf24750-73fe-4040-bdbe-07f73135aec2"
DC_ALICE = ("alice", "JIRAUSER10100")
DC_MALLORY = ("mallory", "JIRAUSER10200")
COMMENT, CHANGE = "comment-10100", "changelog-10432"
JIRA = JiraSettings(url="https://jira.example.com", project="OPS")


@pytest.mark.parametrize(
    ("name", "kind", "issue", "actor", "decision", "dedup"),
    [
        ("cloud_comment_created", EventKind.COMMENT, "OPS-7", (CLOUD_ALICE,), "approve", COMMENT),
        ("dc_comment_created", EventKind.COMMENT, "10010", DC_ALICE, "approve", COMMENT),
        ("dc_issue_commented", EventKind.COMMENT, "OPS-7", DC_ALICE, "approve", COMMENT),
        ("cloud_comment_updated", EventKind.COMMENT_EDITED, "OPS-7", (CLOUD_MALLORY,), None, None),
        ("dc_comment_updated", EventKind.COMMENT_EDITED, "10010", DC_MALLORY, None, None),
        ("dc_issue_comment_edited", EventKind.COMMENT_EDITED, "OPS-7", DC_MALLORY, None, None),
        ("cloud_comment_deleted", EventKind.COMMENT_DELETED, "OPS-7", None, None, None),
        ("dc_comment_deleted", EventKind.COMMENT_DELETED, "10010", None, None, None),
        ("cloud_issue_updated_transition", EventKind.TRANSITION, "OPS-7", (CLOUD_ALICE,), "approve", CHANGE),
        ("dc_issue_updated_transition", EventKind.TRANSITION, "OPS-7", DC_ALICE, "reject", CHANGE),
    ],
)  # fmt: skip
def test_documented_payloads(
    name: str,
    kind: EventKind,
    issue: str,
    actor: tuple[str, ...] | None,
    decision: str | None,
    dedup: str | None,
) -> None:
    event = read_event(payload(name), jira=JIRA)
    assert event is not None
    assert event.kind is kind
    assert event.issue == issue
    assert (event.actor.ids if event.actor else None) == actor
    assert (event.decision.value if event.decision else None) == decision
    assert event.dedup == dedup


def test_a_comment_decision_takes_the_rest_as_its_reason() -> None:
    event = read_event(payload("cloud_comment_created"), jira=JIRA)
    assert event is not None and event.decision is DecisionKind.APPROVE
    assert event.reason == "rollback is fine"
    assert event.actor is not None and event.actor.display == "Alice Approver"


def test_an_edit_is_credited_to_the_editor_never_to_the_author() -> None:
    for name in ("cloud_comment_updated", "dc_comment_updated", "dc_issue_comment_edited"):
        body = payload(name)
        author = body["comment"]["author"]
        event = read_event(body, jira=JIRA)
        assert event is not None and event.decision is None and event.actor is not None
        assert not set(event.actor.ids) & {author.get("accountId"), author.get("name"), author.get("key")}


@pytest.mark.parametrize(
    "body",
    [
        "I will /selfheal approve later",
        "/selfheal",
        "/selfheal approved",
        "/selfheal-approve",
        "looks good\n/selfheal approve",
    ],
)
def test_only_a_first_line_command_is_a_decision(body: str) -> None:
    event = payload("dc_comment_created")
    event["comment"]["body"] = body
    assert read_event(event, jira=JIRA) is None


def test_transitions_to_other_statuses_and_other_events_are_nothing() -> None:
    event = payload("dc_issue_updated_transition")
    event["changelog"]["items"][0]["toString"] = "In Progress"
    assert read_event(event, jira=JIRA) is None
    renamed = JiraSettings(url="https://jira.example.com", project="OPS", rejected_status="Won't fix")
    event["changelog"]["items"][0]["toString"] = "won't FIX"
    parsed = read_event(event, jira=renamed)
    assert parsed is not None and parsed.decision is DecisionKind.REJECT
    assert read_event({"webhookEvent": "jira:issue_created", "issue": {"key": "OPS-7"}}, jira=JIRA) is None
    assert read_event({"webhookEvent": "comment_created", "comment": "nope"}, jira=JIRA) is None


def test_labels_in_an_event_name_no_incident() -> None:
    """The incident comes from the tracker; the parser does not even look at labels."""
    event = payload("dc_issue_updated_transition")
    parsed = read_event(event, jira=JIRA)
    event["issue"]["fields"]["labels"] = ["selfheal-inc-ffffffffffffffff"]
    assert read_event(event, jira=JIRA) == parsed


def test_hmac_signature_and_the_separate_url_token() -> None:
    raw = b'{"webhookEvent":"comment_created"}'
    good = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert signature_ok("s3cret", raw, good)
    assert signature_ok("s3cret", raw, good.upper().replace("SHA256=", "sha256="))
    assert not signature_ok("s3cret", raw + b" ", good)
    assert not signature_ok("other", raw, good)
    assert not signature_ok("s3cret", raw, "sha1=" + good.partition("=")[2])
    assert not signature_ok("s3cret", raw, None)
    assert not signature_ok(None, raw, good)
    assert url_token_ok("url-only", "url-only")
    assert not url_token_ok("url-only", "s3cret")
    assert not url_token_ok(None, "s3cret"), "no URL token unless one is configured"
    assert not url_token_ok("url-only", None)


def _shape(value: Any, full_issue: bool) -> Any:
    """The keys of a JSON value, recursively (lists by their first element), values dropped; an
    issue's `fields` by their names only (a trimmed issue) or not at all (a whole issue)."""
    if isinstance(value, dict):
        return {
            k: (("…" if full_issue else sorted(v)) if k == "fields" else _shape(v, full_issue))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shape(value[0], full_issue)] if value and isinstance(value[0], dict) else []
    return None


@pytest.mark.parametrize("cloud", [True, False], ids=["cloud", "datacenter"])
def test_the_fake_sends_the_documented_shapes(cloud: bool) -> None:
    prefix = "cloud" if cloud else "dc"
    with WebhookReceiver() as receiver, JiraFake(people=["alice", "mallory"], cloud=cloud) as fake:
        created = httpx.post(
            f"{fake.url}/rest/api/2/issue",
            auth=("bot", "token"),
            json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s"}},
        )
        assert created.status_code == 201, created.text
        fake.configure_webhook(receiver.url, secret="s3cret", comment_also_updates=not cloud)
        fake.add_comment_as("OPS-1", "alice", "/selfheal approve\nrollback is fine")
        comment_id = fake.comments("OPS-1")[0]["id"]
        fake.edit_comment_as("OPS-1", comment_id, "mallory", "/selfheal approve")
        fake.delete_comment_as("OPS-1", comment_id, "mallory")
        fake.transition_as("OPS-1", "alice", "Approved")
        events = receiver.events
    got = {(e["webhookEvent"], e.get("issue_event_type_name")): e for e in events}
    expected = {
        ("comment_created", None): f"{prefix}_comment_created",
        ("comment_updated", None): f"{prefix}_comment_updated",
        ("comment_deleted", None): f"{prefix}_comment_deleted",
        ("jira:issue_updated", "issue_generic"): f"{prefix}_issue_updated_transition",
    }
    if not cloud:
        expected[("jira:issue_updated", "issue_commented")] = "dc_issue_commented"
        expected[("jira:issue_updated", "issue_comment_edited")] = "dc_issue_comment_edited"
    assert set(expected) <= set(got)
    for key, name in expected.items():
        documented = payload(name)
        full_issue = key[0] == "jira:issue_updated"
        assert _shape(got[key], full_issue) == _shape(documented, full_issue), name
        if not full_issue and cloud:
            assert "labels" not in got[key]["issue"]["fields"]
        if not cloud:
            assert "issue" not in got[key] or full_issue
        parsed = read_event(got[key], jira=JIRA)
        if key[0] == "comment_created":
            assert parsed is not None and parsed.decision is DecisionKind.APPROVE
            ids = parsed.actor.ids if parsed.actor else ()
            assert ids == ((fake.account_id("alice"),) if cloud else ("alice", fake.user_key("alice")))
