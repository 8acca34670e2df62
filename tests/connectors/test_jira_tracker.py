"""JiraTracker against JiraFake, through the real `jira` client over a real socket.

The fake rejects what Jira rejects, so these tests catch requests Jira would refuse, not just
calls to the library; the last section checks the fake itself against Jira's behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.tickets import TicketActivities, TicketPolicy
from connectors.base import TicketContent, TrackerError, dedup_marker
from connectors.jira.ledger import CreateLedger
from connectors.jira.settings import JiraSettings
from connectors.jira.tracker import PAGE_PROPERTY, JiraTracker, cloud_from_url
from models.tickets import EscalationRequest
from pages.document import JIRA_TEXT_LIMIT, Bullets, Document, Heading, Paragraph, Text, utf16_len
from pages.render import adf_plain_text
from tests.support.jira import JiraFake
from tests.support.jira.webhooks import WebhookReceiver

AUTH = ("bot", "token")
JSON = {"Content-Type": "application/json", "X-Atlassian-Token": "no-check"}


@pytest.fixture
def fake() -> Iterator[JiraFake]:
    with JiraFake(users={"bot": "token"}, people=["alice"]) as f:
        yield f


@pytest.fixture
def cloud_fake() -> Iterator[JiraFake]:
    with JiraFake(users={"bot@example.com": "api-token"}, people=["alice"], cloud=True) as f:
        yield f


def settings_for(fake: JiraFake, **over: Any) -> JiraSettings:
    values: dict[str, Any] = {
        "url": fake.url,
        "project": "OPS",
        "user": "bot",
        "api_token": "token",
        "timeout_seconds": 5,
    }
    values.update(over)
    return JiraSettings(**values)


@pytest.fixture
def tracker(fake: JiraFake) -> Iterator[JiraTracker]:
    t = JiraTracker(settings_for(fake))
    yield t
    t.close()


def content(incident_id: str = "inc-1", **over: Any) -> TicketContent:
    values: dict[str, Any] = {
        "incident_id": incident_id,
        "summary": f"High error rate on checkout ({incident_id})",
        "page": Document(blocks=[Heading(text="What fired"), Bullets(items=[[Text(text="HighErrorRate")]])]),
        "priority": "High",
        "labels": ["service-checkout"],
    }
    if "description" in over:
        # A page of one heading line and one paragraph line, e.g. "Investigation\nfinal page".
        head, _, rest = over.pop("description").partition("\n")
        values["page"] = Document(blocks=[Heading(level=3, text=head), Paragraph(runs=[Text(text=rest)])])
    values.update(over)
    return TicketContent(**values)


def only_issue(fake: JiraFake) -> dict[str, Any]:
    issues = fake.issues
    assert len(issues) == 1, sorted(issues)
    return next(iter(issues.values()))


# ------------------------------------------------------------------------ create / find / update


def test_create_then_found_by_label_and_updated_in_place(fake: JiraFake, tracker: JiraTracker) -> None:
    assert tracker.find_open_by_incident("inc-1") is None

    ref = tracker.create_or_update(content())
    assert ref.key == "OPS-1"
    assert ref.url == f"{fake.url}/browse/OPS-1"
    assert ref.tracker == "jira"
    fields = only_issue(fake)["fields"]
    assert fields["labels"] == ["selfheal", "service-checkout", "selfheal-inc-1"]
    assert fields["priority"]["name"] == "High"
    assert fields["issuetype"]["name"] == "Task"
    assert fields["description"].startswith("h2. What fired")

    found = tracker.find_open_by_incident("inc-1")
    assert found == ref

    # A human adds a label; the next notification changes summary and priority but keeps labels.
    tracker.add_labels("OPS-1", ["human-label"])
    again = tracker.create_or_update(content(summary="Still failing", priority="Highest", labels=[]))
    assert again == ref
    fields = only_issue(fake)["fields"]
    assert fields["summary"] == "Still failing"
    assert fields["priority"]["name"] == "Highest"
    assert {"selfheal-inc-1", "human-label", "service-checkout"} <= set(fields["labels"])
    assert fake.count("POST", r"/rest/api/2/issue") == 1


def test_unchanged_content_sends_no_update(fake: JiraFake, tracker: JiraTracker) -> None:
    tracker.create_or_update(content())
    fake.clear_requests()
    tracker.create_or_update(content())
    assert fake.count("PUT", r"/rest/api/2/issue/.*") == 0
    assert fake.count("POST", r"/rest/api/2/issue") == 0


def test_other_incident_gets_its_own_ticket(fake: JiraFake, tracker: JiraTracker) -> None:
    a = tracker.create_or_update(content("inc-a"))
    b = tracker.create_or_update(content("inc-b"))
    assert a.key != b.key
    assert tracker.find_open_by_incident("inc-a") == a
    assert tracker.find_open_by_incident("inc-b") == b


def test_done_ticket_is_not_reused(fake: JiraFake, tracker: JiraTracker) -> None:
    first = tracker.create_or_update(content())
    assert tracker.transition(first.key, "Done") is True
    assert tracker.find_open_by_incident("inc-1") is None
    second = tracker.create_or_update(content())
    assert second.key != first.key
    assert len(fake.issues) == 2


def test_assignee_on_server_is_a_user_name(fake: JiraFake, tracker: JiraTracker) -> None:
    ref = tracker.create_or_update(content(assignee="alice"))
    assert fake.issues[ref.key]["fields"]["assignee"]["name"] == "alice"
    with pytest.raises(TrackerError) as err:
        tracker.create_or_update(content("inc-2", assignee="nobody"))
    assert err.value.retryable is False
    assert "assignee" in str(err.value)


# ------------------------------------------------------------------------------------ comments


def test_comment_is_added_once_per_dedup_key(fake: JiraFake, tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content()).key
    assert tracker.comment(key, "Escalated to on-call.", "esc-1") is True
    assert tracker.comment(key, "Escalated to on-call.", "esc-1") is False
    assert tracker.comment(key, "Escalated again.", "esc-10") is True  # not fooled by a prefix
    bodies = [c["body"] for c in fake.comments(key)]
    assert bodies == [
        f"Escalated to on\\-call.\n\n{dedup_marker('esc-1')}",  # the body is escaped wiki text
        f"Escalated again.\n\n{dedup_marker('esc-10')}",
    ]
    assert all(c["author"]["name"] == "bot" for c in fake.comments(key))


def test_comment_dedup_looks_past_the_first_page(fake: JiraFake, tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content()).key
    for i in range(130):
        fake.add_comment_as(key, "alice", f"noise {i}")
    assert tracker.comment(key, "late", "late-1") is True  # comment number 131
    assert tracker.comment(key, "late", "late-1") is False
    assert len(fake.comments(key)) == 131


def test_comment_on_missing_issue_is_not_retryable(tracker: JiraTracker) -> None:
    with pytest.raises(TrackerError) as err:
        tracker.comment("OPS-404", "x", "k")
    assert err.value.retryable is False
    assert "404" in str(err.value)


# --------------------------------------------------------------------------------- transitions


def test_transition_moves_once_and_reports_already_there(fake: JiraFake, tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content()).key
    assert tracker.transition(key, "Approved") is True
    assert fake.issues[key]["fields"]["status"]["name"] == "Approved"
    assert tracker.transition(key, "Approved") is False
    assert tracker.transition(key, "approved") is False  # case-insensitive
    assert tracker.transition(key, "Done") is True
    fields = fake.issues[key]["fields"]
    assert fields["status"]["statusCategory"]["key"] == "done"
    assert fields["resolution"]["name"] == "Done"
    assert fake.count("POST", rf"/rest/api/2/issue/{key}/transitions") == 2


def test_transition_found_by_target_status_when_names_differ() -> None:
    # Transition names are free text in Jira; the target status is what we mean.
    chosen = JiraTracker._pick_transition(
        [
            {"id": "5", "name": "Resolve", "to": {"name": "Done"}},
            {"id": "6", "name": "Done", "to": {"name": "Closed"}},
        ],
        "done",
    )
    assert chosen is not None
    assert chosen["id"] == "5"


def test_unknown_transition_is_not_retryable_and_lists_options(tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content()).key
    with pytest.raises(TrackerError) as err:
        tracker.transition(key, "Escalated")
    assert err.value.retryable is False
    assert "Escalated" in str(err.value)
    assert "In Progress" in str(err.value)


def test_transition_done_by_someone_else_meanwhile_counts_as_done(
    fake: JiraFake, tracker: JiraTracker
) -> None:
    key = tracker.create_or_update(content()).key
    real_transitions = tracker.client.transitions

    def racing(issue: str) -> Any:
        listed = real_transitions(issue)
        fake.transition_as(key, "alice", "Done")  # a human wins the race after we listed
        return listed

    tracker.client.transitions = racing
    assert tracker.transition(key, "Done") is False
    assert fake.issues[key]["fields"]["status"]["name"] == "Done"


# -------------------------------------------------------------------- remote links, attachments


def test_remote_link_is_added_once(fake: JiraFake, tracker: JiraTracker) -> None:
    url = "http://127.0.0.1:8233/namespaces/default/workflows/incident-inc-1"
    c = content(link_url=url, link_title="Temporal workflow")
    key = tracker.create_or_update(c).key
    tracker.create_or_update(c)
    links = fake.remote_links(key)
    assert [link["object"] for link in links] == [{"url": url, "title": "Temporal workflow"}]
    assert fake.count("POST", rf"/rest/api/2/issue/{key}/remotelink") == 1


def test_attachment_is_uploaded_once(fake: JiraFake, tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content()).key
    assert tracker.attach(key, "diagnosis.txt", b"pod restarted 3 times\n") is True
    assert tracker.attach(key, "diagnosis.txt", b"pod restarted 3 times\n") is False
    assert fake.attachments(key) == [("diagnosis.txt", b"pod restarted 3 times\n")]
    with pytest.raises(TrackerError):
        tracker.attach(key, "empty.txt", b"")


def test_set_priority_is_idempotent(fake: JiraFake, tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content(priority="Medium")).key
    tracker.set_priority(key, "Highest")
    assert fake.issues[key]["fields"]["priority"]["name"] == "Highest"
    fake.clear_requests()
    tracker.set_priority(key, "Highest")
    assert fake.count("PUT", r".*") == 0


# ---------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("settings_over", "content_over", "expected"),
    [
        ({}, {"priority": "Urgent"}, "priority: Priority name 'Urgent' is not valid"),
        ({}, {"labels": ["two words"]}, "labels: The label 'two words' contains spaces"),
        ({"issue_type": "Epic"}, {}, "issuetype: valid issue type is required"),
        # Jira already refuses the search that precedes the create.
        ({"project": "NOPE"}, {}, "The value 'NOPE' does not exist for the field 'project'"),
    ],
)
def test_jira_validation_errors_are_not_retryable_and_name_the_field(
    fake: JiraFake, settings_over: dict[str, Any], content_over: dict[str, Any], expected: str
) -> None:
    tracker = JiraTracker(settings_for(fake, **settings_over))
    with pytest.raises(TrackerError) as err:
        tracker.create_or_update(content(**content_over))
    assert err.value.retryable is False
    assert expected in str(err.value)
    assert "HTTP 400" in str(err.value)
    assert fake.issues == {}


def test_bad_credentials_are_not_retryable(fake: JiraFake) -> None:
    tracker = JiraTracker(settings_for(fake, api_token="wrong"))
    with pytest.raises(TrackerError) as err:
        tracker.find_open_by_incident("inc-1")
    assert err.value.retryable is False
    assert "401" in str(err.value)


def test_personal_access_token_is_sent_as_bearer(fake: JiraFake) -> None:
    tracker = JiraTracker(settings_for(fake, user=None, api_token="token"))
    ref = tracker.create_or_update(content())
    assert fake.issues[ref.key]["fields"]["reporter"]["name"] == "bot"


def test_missing_token_is_a_configuration_error(fake: JiraFake) -> None:
    with pytest.raises(TrackerError) as err:
        JiraTracker(settings_for(fake, api_token=None))
    assert err.value.retryable is False


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_overload_and_server_errors_are_retryable(fake: JiraFake, tracker: JiraTracker, status: int) -> None:
    fake.fail_next(status=status, count=1, retry_after=7)
    with pytest.raises(TrackerError) as err:
        tracker.create_or_update(content())
    assert err.value.retryable is True
    assert str(status) in str(err.value)
    if status == 429:
        assert "retry after 7s" in str(err.value)
    assert fake.issues == {}
    assert len(fake.requests) == 1  # the client gave up at once: retrying is Temporal's job
    assert tracker.create_or_update(content()).key == "OPS-1"


def test_failure_in_the_middle_leaves_a_state_the_retry_completes(
    fake: JiraFake, tracker: JiraTracker
) -> None:
    url = "http://temporal/ui/inc-1"
    fake.fail_next(status=500, path=r"/remotelink$", method="POST")
    with pytest.raises(TrackerError) as err:
        tracker.create_or_update(content(link_url=url))
    assert err.value.retryable is True
    key = only_issue(fake)["key"]
    assert fake.remote_links(key) == []
    assert tracker.create_or_update(content(link_url=url)).key == key
    assert len(fake.issues) == 1
    assert len(fake.remote_links(key)) == 1


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracker = JiraTracker(
        JiraSettings(
            url=f"http://127.0.0.1:{port}", project="OPS", user="bot", api_token="t", timeout_seconds=2
        )
    )
    with pytest.raises(TrackerError) as err:
        tracker.find_open_by_incident("inc-1")
    assert err.value.retryable is True


# --------------------------------------------------------------------------------------- Cloud


def test_cloud_uses_enhanced_search_and_account_ids(cloud_fake: JiraFake) -> None:
    settings = settings_for(cloud_fake, user="bot@example.com", api_token="api-token", cloud=True)
    tracker = JiraTracker(settings)
    alice = cloud_fake.account_id("alice")
    ref = tracker.create_or_update(content(assignee=alice))
    assert tracker.create_or_update(content(assignee=alice)) == ref
    assert tracker.find_open_by_incident("inc-1") == ref
    assert len(cloud_fake.issues) == 1
    assert cloud_fake.issues[ref.key]["fields"]["assignee"]["accountId"] == alice
    assert cloud_fake.count("GET", r"/rest/api/2/search/jql") == 3
    assert cloud_fake.count("GET", r"/rest/api/2/search") == 0


def test_cloud_is_detected_from_server_info_without_the_flag(cloud_fake: JiraFake) -> None:
    """A Cloud site at an address that does not say so: serverInfo decides, asked once."""
    tracker = JiraTracker(settings_for(cloud_fake, user="bot@example.com", api_token="api-token"))
    alice = cloud_fake.account_id("alice")
    ref = tracker.create_or_update(content(assignee=alice))
    assert tracker.create_or_update(content(assignee=alice)) == ref
    assert cloud_fake.issues[ref.key]["fields"]["assignee"]["accountId"] == alice
    assert cloud_fake.count("GET", r"/rest/api/2/serverInfo") == 1
    assert cloud_fake.count("GET", r"/rest/api/2/search") == 0
    assert cloud_fake.count("GET", r"/rest/api/2/search/jql") == 2


def test_server_is_detected_from_server_info_and_searches_the_v2_way(fake: JiraFake) -> None:
    tracker = JiraTracker(settings_for(fake))
    tracker.create_or_update(content(assignee="alice"))
    assert only_issue(fake)["fields"]["assignee"]["name"] == "alice"
    assert fake.count("GET", r"/rest/api/2/search") == 1
    assert fake.count("GET", r"/rest/api/2/serverInfo") == 1


@pytest.mark.parametrize(
    ("url", "cloud"),
    [
        ("https://acme.atlassian.net", True),
        ("https://ACME.atlassian.net/", True),
        ("https://api.atlassian.com/ex/jira/11223344-a1b2-c3d4-e5f6-123456789abc", True),
        ("https://jira.acme.internal", None),
        ("https://atlassian.net.evil.example", None),
    ],
)
def test_cloud_is_read_from_the_url_when_it_says_so(url: str, cloud: bool | None) -> None:
    assert cloud_from_url(url) is cloud


@pytest.mark.parametrize(
    ("deployment", "over", "setting"),
    [
        ("cloud", {"cloud": False}, "tracker.jira.cloud: set to false but"),
        ("server", {"cloud": True}, "tracker.jira.cloud: set to true but"),
        ("server", {"api_version": 3}, "tracker.jira.api_version: 3 is Jira Cloud only"),
    ],
)
def test_settings_that_contradict_the_server_are_refused_naming_the_setting(
    fake: JiraFake, cloud_fake: JiraFake, deployment: str, over: dict[str, Any], setting: str
) -> None:
    if deployment == "cloud":
        tracker = JiraTracker(settings_for(cloud_fake, user="bot@example.com", api_token="api-token", **over))
    else:
        tracker = JiraTracker(settings_for(fake, **over))
    with pytest.raises(TrackerError) as err:
        tracker.check_deployment()
    assert str(err.value).startswith(setting)
    assert "\n" not in str(err.value)
    assert err.value.retryable is False


def test_api_version_3_pinned_to_server_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="api_version: 3 is Jira Cloud only"):
        JiraSettings(url="https://jira.acme.internal", project="OPS", cloud=False, api_version=3)


def test_unreachable_jira_at_start_is_retryable_and_decided_on_first_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracker = JiraTracker(JiraSettings(url=f"http://127.0.0.1:{port}", project="OPS", api_token="t"))
    with pytest.raises(TrackerError) as err:
        tracker.check_deployment()
    assert err.value.retryable is True


def test_scoped_token_gateway_url_with_browse_links_on_the_site() -> None:
    site = "https://acme.atlassian.net"
    users = {"bot@example.com": "api-token"}
    with JiraFake(users=users, people=["alice"], cloud=True, cloud_id="c0ffee", site_url=site) as jira:
        gateway = f"{jira.url}/ex/jira/c0ffee"
        tracker = JiraTracker(settings_for(jira, url=gateway, user="bot@example.com", api_token="api-token"))
        ref = tracker.create_or_update(content())
        assert ref.url == f"{site}/browse/{ref.key}"  # from serverInfo baseUrl, not the API gateway
        assert jira.count("GET", r"/rest/api/2/search") == 0  # Cloud from the URL alone
        cred = {"user": "bot@example.com", "api_token": "api-token"}
        pinned = JiraTracker(settings_for(jira, url=gateway, site_url=site + "/", **cred))
        assert pinned.find_open_by_incident("inc-1") == ref


# ------------------------------------------------------------------ a create whose answer is lost


def test_held_create_is_found_by_a_second_worker(fake: JiraFake) -> None:
    first = JiraTracker(settings_for(fake))
    results: dict[str, Any] = {}

    def run() -> None:
        try:
            results["ref"] = first.create_or_update(content())
        except Exception as exc:
            results["error"] = exc

    with fake.hold_create() as held:
        thread = threading.Thread(target=run)
        thread.start()
        key = held.wait_created()
        # Another worker retries the activity while the first is stuck: search finds the ticket.
        second = JiraTracker(settings_for(fake))
        assert second.find_open_by_incident("inc-1") is not None
        assert second.create_or_update(content()).key == key
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert results["ref"].key == key
    assert len(fake.issues) == 1
    assert fake.count("POST", r"/rest/api/2/issue") == 1


def test_create_that_times_out_is_retryable_and_the_retry_reuses_the_ticket(fake: JiraFake) -> None:
    tracker = JiraTracker(settings_for(fake, timeout_seconds=0.5))
    held = fake.hold_create()
    with pytest.raises(TrackerError) as err:
        tracker.create_or_update(content())
    assert err.value.retryable is True
    key = held.wait_created(timeout=1)
    fake.release_create()
    assert tracker.create_or_update(content()).key == key
    assert len(fake.issues) == 1


CLOUD_CRED = {"user": "bot@example.com", "api_token": "api-token"}


def lagging_cloud(searches: int) -> JiraFake:
    """A Cloud whose search/jql shows each new issue only after `searches` searches."""
    return JiraFake(
        users={"bot@example.com": "api-token"}, people=["alice"], cloud=True, search_lag_searches=searches
    )


def test_lost_create_on_a_lagging_index_waits_instead_of_creating_twice(tmp_path: Path) -> None:
    """The create's answer is lost, the retry runs on another worker (sharing only the store's
    database), and search/jql does not show the issue yet: the retry waits (retryable) until the
    index does, and never creates a second issue."""
    store_url = f"sqlite:///{tmp_path / 'incidents.db'}"
    with lagging_cloud(searches=2) as jira:
        first = JiraTracker(
            settings_for(jira, timeout_seconds=0.5, **CLOUD_CRED), ledger=CreateLedger(store_url)
        )
        held = jira.hold_create()
        with pytest.raises(TrackerError) as lost:
            first.create_or_update(content())
        assert lost.value.retryable is True
        key = held.wait_created()
        jira.release_create()
        first.close()
        # Another worker host: only the shared database remembers the attempt.
        retry = JiraTracker(settings_for(jira, **CLOUD_CRED), ledger=CreateLedger(store_url))
        waits = 0
        while True:
            try:
                ref = retry.create_or_update(content())
                break
            except TrackerError as err:
                assert err.retryable and "waiting up to 60s for Jira's index" in str(err)
                waits += 1
                assert waits <= 2, "the index caught up after two searches"
        assert waits == 2
        assert ref.key == key
        assert len(jira.issues) == 1
        assert jira.count("POST", r"/rest/api/2/issue") == 1


def test_without_the_wait_the_lagging_index_would_duplicate_the_ticket() -> None:
    """What the ledger guards against, shown on the fake: past `index_lag_seconds` selfheal creates
    again, and a lagging index then yields two tickets."""
    with lagging_cloud(searches=5) as jira:
        tracker = JiraTracker(settings_for(jira, timeout_seconds=0.5, index_lag_seconds=0, **CLOUD_CRED))
        held = jira.hold_create()
        with pytest.raises(TrackerError):
            tracker.create_or_update(content())
        held.wait_created()
        jira.release_create()
        tracker.create_or_update(content())
        assert len(jira.issues) == 2


def test_answered_create_is_found_again_by_its_key_while_search_lags() -> None:
    """The create answered but a later step failed: the retry reads the remembered key (GET is
    consistent) instead of trusting the lagging search, and completes the ticket."""
    with lagging_cloud(searches=10) as jira:
        tracker = JiraTracker(settings_for(jira, **CLOUD_CRED))
        jira.fail_next(500, method="POST", path=r"/remotelink$")
        with pytest.raises(TrackerError) as err:
            tracker.create_or_update(content(link_url="https://temporal.example/wf/inc-1"))
        assert err.value.retryable is True
        ref = tracker.create_or_update(content(link_url="https://temporal.example/wf/inc-1"))
        assert len(jira.issues) == 1
        assert jira.count("POST", r"/rest/api/2/issue") == 1
        assert jira.count("POST", rf"/rest/api/2/issue/{ref.key}/remotelink") == 2
        assert tracker.find_open_by_incident("inc-1") is None, "search still lags: the ledger found it"


def test_create_whose_page_hash_failed_is_completed_by_the_retry_not_duplicated() -> None:
    with lagging_cloud(searches=10) as jira:
        tracker = JiraTracker(settings_for(jira, **CLOUD_CRED))
        jira.fail_next(503, method="PUT", path=r"/properties/selfheal\.page$")
        with pytest.raises(TrackerError):
            tracker.create_or_update(content())
        ref = tracker.create_or_update(content())
        assert len(jira.issues) == 1
        assert jira.issue_property(ref.key, PAGE_PROPERTY)["sha256"]


def test_remembered_ticket_closed_meanwhile_is_not_reused(fake: JiraFake, tracker: JiraTracker) -> None:
    key = tracker.create_or_update(content()).key
    tracker.transition(key, "Done")
    assert tracker.create_or_update(content()).key != key


def test_ledger_with_its_database_down_falls_back_to_memory_and_never_blocks_a_create(
    tmp_path: Path,
) -> None:
    """A store that cannot be opened (here: its path is a directory) must not hold a ticket back:
    the ledger keeps the attempt in memory, so same-process retries stay covered."""
    (tmp_path / "db").mkdir()
    ledger = CreateLedger(f"sqlite:///{tmp_path / 'db'}")
    ledger.attempt("inc-1")
    ledger.created("inc-1", "OPS-7")
    record = ledger.get("inc-1")
    assert record is not None and record.key == "OPS-7"
    ledger.forget("inc-1")
    assert ledger.get("inc-1") is None


def test_ledger_record_is_shared_through_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'incidents.db'}"
    ledger = CreateLedger(url)
    ledger.attempt("inc-1")
    other = CreateLedger(url)
    pending = other.get("inc-1")
    assert pending is not None and pending.key is None
    ledger.created("inc-1", "OPS-7")
    done = other.get("inc-1")
    assert done is not None and done.key == "OPS-7" and done.attempted_at == pending.attempted_at
    other.forget("inc-1")
    assert ledger.get("inc-1") is None, "the database answers for every worker, not one's memory"


# ------------------------------------------------------------------ the page, by the hash selfheal keeps


def test_cloud_rerenders_the_page_and_an_unchanged_page_is_still_never_resent() -> None:
    with lagging_cloud(searches=0) as jira:
        tracker = JiraTracker(settings_for(jira, **CLOUD_CRED))
        page = content(description="Investigation\nfirst page")
        key = tracker.create_or_update(page).key
        sent = tracker.description(page)
        # Jira Cloud keeps ADF and renders wiki back from it: what comes back is not what was sent.
        assert jira.issues[key]["fields"]["description"] != sent
        assert jira.issue_property(key, PAGE_PROPERTY)["sha256"]
        jira.clear_requests()
        tracker.update_page(key, page)
        tracker.update_page(key, page)
        tracker.create_or_update(page)
        assert jira.count("PUT", rf"/rest/api/2/issue/{key}") == 0, "an unchanged page is never re-sent"
        tracker.update_page(key, content(description="Investigation\nsecond page"))
        assert jira.count("PUT", rf"/rest/api/2/issue/{key}") == 1
        assert "second page" in jira.issues[key]["fields"]["description"]
        tracker.update_page(key, content(description="Investigation\nsecond page"))
        assert jira.count("PUT", rf"/rest/api/2/issue/{key}") == 1


def test_ticket_without_the_hash_property_is_rewritten_once(fake: JiraFake, tracker: JiraTracker) -> None:
    """An issue written before the property existed (or edited by a person): one rewrite, then quiet."""
    key = tracker.create_or_update(content()).key
    api(fake, "DELETE", f"issue/{key}/properties/{PAGE_PROPERTY}")
    tracker.update_page(key, content())
    tracker.update_page(key, content())
    assert fake.count("PUT", rf"/rest/api/2/issue/{key}") == 1


# ------------------------------------------------------------------ sizes in UTF-16 units


@pytest.mark.parametrize("deployment", ["server", "cloud-v3"])
def test_long_comment_is_cut_in_utf16_units_says_so_and_keeps_its_marker(
    fake: JiraFake, cloud_fake: JiraFake, deployment: str
) -> None:
    if deployment == "server":
        jira, tracker = fake, JiraTracker(settings_for(fake))
    else:
        cred = {"user": "bot@example.com", "api_token": "api-token"}
        jira, tracker = cloud_fake, JiraTracker(settings_for(cloud_fake, api_version=3, **cred))
    key = tracker.create_or_update(content()).key
    body = "Escalated. " + "\U0001f525" * 20_000  # 20,011 code points, 40,011 UTF-16 units
    assert tracker.comment(key, body, "esc:1") is True
    assert tracker.comment(key, body, "esc:1") is False, "the marker survived the cut"
    comments = jira.comments(key, v3=deployment != "server")
    assert len(comments) == 1
    stored = comments[0]["body"]
    text = stored if isinstance(stored, str) else adf_plain_text(stored)
    assert dedup_marker("esc:1") in text
    assert "comment trimmed to Jira's size limit" in text and "characters cut" in text
    size = (
        stored if isinstance(stored, str) else json.dumps(stored, separators=(",", ":"), ensure_ascii=False)
    )
    assert utf16_len(size) <= JIRA_TEXT_LIMIT


# ------------------------------------------------------------------ escalation assignee


def test_assign_names_people_as_each_deployment_does(fake: JiraFake, cloud_fake: JiraFake) -> None:
    server = JiraTracker(settings_for(fake))
    key = server.create_or_update(content()).key
    assert server.assign(key, "alice") is True
    assert server.assign(key, "alice") is False
    assert fake.issues[key]["fields"]["assignee"]["name"] == "alice"
    assert fake.count("PUT", rf"/rest/api/2/issue/{key}/assignee") == 1

    cloud = JiraTracker(settings_for(cloud_fake, user="bot@example.com", api_token="api-token"))
    alice = cloud_fake.account_id("alice")
    key = cloud.create_or_update(content()).key
    assert cloud.assign(key, alice) is True
    assert cloud.assign(key, alice) is False
    assert cloud_fake.issues[key]["fields"]["assignee"]["accountId"] == alice


def test_escalation_assigns_the_configured_person(cloud_fake: JiraFake) -> None:
    alice = cloud_fake.account_id("alice")
    settings = settings_for(
        cloud_fake, user="bot@example.com", api_token="api-token", escalation_assignee=alice
    )
    tracker = JiraTracker(settings)
    key = tracker.create_or_update(content()).key
    activities = TicketActivities(tracker, TicketPolicy(settings))
    req = EscalationRequest(
        incident_id="inc-1", key=key, severity="critical", level=1, reason="no playbook", dedup_key="esc:1"
    )
    asyncio.run(ActivityEnvironment().run(activities.escalate_ticket, req))
    fields = cloud_fake.issues[key]["fields"]
    assert fields["assignee"]["accountId"] == alice
    assert "selfheal-escalated" in fields["labels"]


# ------------------------------------------------------------------ the fake rejects what Jira does


def api(fake: JiraFake, method: str, path: str, **kw: Any) -> httpx.Response:
    kw.setdefault("auth", AUTH)
    return httpx.request(method, f"{fake.url}/rest/api/2/{path}", timeout=5, **kw)


def create_raw(fake: JiraFake, **fields: Any) -> httpx.Response:
    body = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s", **fields}
    return api(fake, "POST", "issue", json={"fields": body}, headers=JSON)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"project": {"key": "NOPE"}}, "project"),
        ({"priority": {"name": "P1"}}, "priority"),
        ({"issuetype": {"name": "Story"}}, "issuetype"),
        ({"summary": "x" * 256}, "summary"),
        ({"summary": "two\nlines"}, "summary"),
        ({"summary": ""}, "summary"),
        ({"labels": ["has space"]}, "labels"),
        ({"customfield_10010": "x"}, "customfield_10010"),
    ],
)
def test_fake_rejects_invalid_create_like_jira(fake: JiraFake, fields: dict[str, Any], field: str) -> None:
    r = create_raw(fake, **fields)
    assert r.status_code == 400
    assert r.json()["errorMessages"] == []
    assert field in r.json()["errors"]
    assert fake.issues == {}


def test_fake_create_and_read_shapes(fake: JiraFake) -> None:
    r = create_raw(fake, labels=["a"], priority={"name": "Low"})
    assert r.status_code == 201
    assert set(r.json()) == {"id", "key", "self"}
    issue = api(fake, "GET", "issue/OPS-1").json()
    assert issue["key"] == "OPS-1"
    assert issue["fields"]["status"] | {"statusCategory": None} == issue["fields"]["status"] | {
        "statusCategory": None
    }
    assert issue["fields"]["status"]["statusCategory"]["key"] == "new"
    assert issue["fields"]["priority"]["name"] == "Low"
    assert issue["fields"]["comment"]["total"] == 0
    only = api(fake, "GET", "issue/OPS-1", params={"fields": "labels"}).json()
    assert set(only["fields"]) == {"labels"}
    missing = api(fake, "GET", "issue/OPS-9")
    assert missing.status_code == 404
    assert missing.json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
        "errors": {},
    }
    fields = api(fake, "GET", "field").json()
    summary = next(f for f in fields if f["id"] == "summary")
    assert {"id", "key", "name", "custom", "navigable", "searchable", "clauseNames", "schema"} <= set(summary)


def test_fake_requires_authentication(fake: JiraFake) -> None:
    anonymous = httpx.get(f"{fake.url}/rest/api/2/myself", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["errorMessages"] and anonymous.json()["errors"] == {}
    wrong = api(fake, "GET", "myself", auth=("bot", "nope"))
    assert wrong.status_code == 401
    bearer = api(fake, "GET", "myself", auth=None, headers={"Authorization": "Bearer token"})
    assert bearer.json()["name"] == "bot"
    assert httpx.get(f"{fake.url}/rest/api/2/serverInfo", timeout=5).status_code == 200


def test_fake_attachment_needs_the_xsrf_header(fake: JiraFake) -> None:
    create_raw(fake)
    files = {"file": ("a.txt", b"hello", "text/plain")}
    r = api(fake, "POST", "issue/OPS-1/attachments", files=files)
    assert r.status_code == 403
    assert "XSRF" in r.text
    ok = api(fake, "POST", "issue/OPS-1/attachments", files=files, headers={"X-Atlassian-Token": "no-check"})
    assert ok.status_code == 200
    assert ok.json()[0]["filename"] == "a.txt"
    assert ok.json()[0]["size"] == 5


def test_fake_unknown_transition_is_400(fake: JiraFake) -> None:
    create_raw(fake)
    listed = api(fake, "GET", "issue/OPS-1/transitions").json()["transitions"]
    assert {t["name"] for t in listed} == {"In Progress", "Approved", "Rejected", "Done"}
    r = api(fake, "POST", "issue/OPS-1/transitions", json={"transition": {"id": "999"}}, headers=JSON)
    assert r.status_code == 400
    assert "999" in r.json()["errorMessages"][0]


def test_fake_edit_label_operations(fake: JiraFake) -> None:
    create_raw(fake, labels=["a", "b"])
    update = {"labels": [{"add": "c"}, {"remove": "a"}]}
    assert api(fake, "PUT", "issue/OPS-1", json={"update": update}, headers=JSON).status_code == 204
    assert fake.issues["OPS-1"]["fields"]["labels"] == ["b", "c"]
    bad = api(fake, "PUT", "issue/OPS-1", json={"update": {"labels": [{"add": "x y"}]}}, headers=JSON)
    assert bad.status_code == 400
    assert "labels" in bad.json()["errors"]


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("project = OPS AND", "Error in the JQL Query"),
        ("project OPS", "Error in the JQL Query: Expecting operator"),
        ("labels = foo.bar", "reserved JQL character"),
        ('labels = "unterminated', "Error in the JQL Query"),
        ("nosuchfield = 1", "Field 'nosuchfield' does not exist"),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'"),
        ("summary = x", "The operator '=' is not supported by the 'summary' field"),
        ("project = OPS ORDER BY nosuch", "Field 'nosuch' does not exist"),
        ("assignee = membersOf(x)", "Unable to find JQL function"),
    ],
)
def test_fake_rejects_bad_jql(fake: JiraFake, jql: str, message: str) -> None:
    r = api(fake, "GET", "search", params={"jql": jql})
    assert r.status_code == 400
    assert r.json()["errors"] == {}
    assert message in r.json()["errorMessages"][0]


def test_fake_jql_semantics(fake: JiraFake) -> None:
    create_raw(fake, labels=["x"])  # OPS-1
    create_raw(fake)  # OPS-2, no labels
    create_raw(fake, labels=["x", "y"])  # OPS-3
    api(fake, "POST", "issue/OPS-3/transitions", json={"transition": {"id": "31"}}, headers=JSON)

    def keys(jql: str, **params: Any) -> list[str]:
        r = api(fake, "GET", "search", params={"jql": jql, **params})
        assert r.status_code == 200, r.text
        return [i["key"] for i in r.json()["issues"]]

    assert keys('project = "OPS" AND labels = "x" ORDER BY created DESC') == ["OPS-3", "OPS-1"]
    assert keys("project = OPS AND labels = x AND statusCategory != Done") == ["OPS-1"]
    assert keys("labels = x AND status != Done ORDER BY key ASC") == ["OPS-1"]
    assert keys("resolution = Unresolved ORDER BY created ASC") == ["OPS-1", "OPS-2"]
    assert keys("labels != y ORDER BY key") == ["OPS-1"]  # != never matches an empty field
    assert keys("labels is EMPTY") == ["OPS-2"]
    assert keys('status in ("To Do", "In Progress") ORDER BY key ASC') == ["OPS-1", "OPS-2"]
    assert keys("key not in (OPS-1, OPS-2)") == ["OPS-3"]
    assert keys("labels = x OR labels is EMPTY ORDER BY key ASC") == ["OPS-1", "OPS-2", "OPS-3"]
    page = api(fake, "GET", "search", params={"jql": "project = OPS", "maxResults": 1, "startAt": 1}).json()
    assert (page["total"], page["startAt"], page["maxResults"], len(page["issues"])) == (3, 1, 1, 1)
    trimmed = api(fake, "GET", "search", params={"jql": "key = OPS-1", "fields": "summary"}).json()
    assert set(trimmed["issues"][0]["fields"]) == {"summary"}


def test_fake_search_endpoints_match_the_deployment(fake: JiraFake, cloud_fake: JiraFake) -> None:
    assert api(fake, "GET", "search/jql", params={"jql": "project = OPS"}).status_code == 404
    cloud_auth = ("bot@example.com", "api-token")
    assert (
        api(cloud_fake, "GET", "search", params={"jql": "project = OPS"}, auth=cloud_auth).status_code == 410
    )
    unbounded = api(cloud_fake, "GET", "search/jql", params={"jql": ""}, auth=cloud_auth)
    assert unbounded.status_code == 400
    for _ in range(3):
        api(
            cloud_fake,
            "POST",
            "issue",
            auth=cloud_auth,
            headers=JSON,
            json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": "s"}},
        )
    params = {"jql": "project = OPS ORDER BY key ASC", "maxResults": 2, "fields": "summary"}
    first = api(cloud_fake, "GET", "search/jql", params=params, auth=cloud_auth).json()
    assert [i["key"] for i in first["issues"]] == ["OPS-1", "OPS-2"]
    assert first["isLast"] is False
    assert "total" not in first
    rest = api(
        cloud_fake,
        "GET",
        "search/jql",
        params={**params, "nextPageToken": first["nextPageToken"]},
        auth=cloud_auth,
    ).json()
    assert [i["key"] for i in rest["issues"]] == ["OPS-3"]
    assert rest["isLast"] is True
    ids_only = api(cloud_fake, "GET", "search/jql", params={"jql": "key = OPS-1"}, auth=cloud_auth).json()
    assert set(ids_only["issues"][0]) == {"id"}  # Cloud returns ids unless fields are asked for


def test_fake_names_people_as_each_deployment_does(fake: JiraFake, cloud_fake: JiraFake) -> None:
    """Cloud refuses `name` (GDPR: accountId only); Server/DC has no accountIds."""
    cloud_auth = ("bot@example.com", "api-token")
    alice = cloud_fake.account_id("alice")

    def create(jira: JiraFake, assignee: dict[str, str], auth: tuple[str, str]) -> httpx.Response:
        fields = {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": "s",
            "assignee": assignee,
        }
        return api(jira, "POST", "issue", json={"fields": fields}, headers=JSON, auth=auth)

    refused = create(cloud_fake, {"name": "alice"}, cloud_auth)
    assert refused.status_code == 400 and "accountId" in refused.json()["errors"]["assignee"]
    assert create(cloud_fake, {"accountId": alice}, cloud_auth).status_code == 201
    assert create(fake, {"accountId": alice}, AUTH).status_code == 400
    assert create(fake, {"name": "alice"}, AUTH).status_code == 201
    put = api(
        cloud_fake, "PUT", "issue/OPS-1/assignee", json={"name": "alice"}, headers=JSON, auth=cloud_auth
    )
    assert put.status_code == 400
    put = api(fake, "PUT", "issue/OPS-1/assignee", json={"name": "nobody"}, headers=JSON)
    assert put.status_code == 404
    cloud_user = cloud_fake.issues["OPS-1"]["fields"]["reporter"]
    assert cloud_user["accountId"] and not {"name", "key", "emailAddress"} & set(cloud_user)
    server_user = fake.issues["OPS-1"]["fields"]["reporter"]
    assert server_user["name"] == server_user["key"] == "bot" and "accountId" not in server_user
    by_name = api(cloud_fake, "GET", "search/jql", params={"jql": "assignee = alice"}, auth=cloud_auth)
    assert by_name.status_code == 400  # Cloud's JQL knows people by accountId
    by_id = api(cloud_fake, "GET", "search/jql", params={"jql": f'assignee = "{alice}"'}, auth=cloud_auth)
    assert len(by_id.json()["issues"]) == 1
    assert api(fake, "GET", "search", params={"jql": f'assignee = "{alice}"'}).status_code == 400


def test_fake_server_has_no_rest_v3(fake: JiraFake) -> None:
    create_raw(fake)
    assert httpx.get(f"{fake.url}/rest/api/3/issue/OPS-1", auth=AUTH, timeout=5).status_code == 404
    assert api(fake, "GET", "issue/OPS-1").status_code == 200


def test_fake_issue_properties_like_jira(fake: JiraFake) -> None:
    create_raw(fake)
    path = "issue/OPS-1/properties/selfheal.page"
    assert api(fake, "GET", path).status_code == 404
    assert api(fake, "PUT", path, json={"sha256": "ab"}, headers=JSON).status_code == 201
    assert api(fake, "PUT", path, json={"sha256": "cd"}, headers=JSON).status_code == 200
    assert api(fake, "GET", path).json() == {"key": "selfheal.page", "value": {"sha256": "cd"}}
    assert [k["key"] for k in api(fake, "GET", "issue/OPS-1/properties").json()["keys"]] == ["selfheal.page"]
    assert api(fake, "PUT", path, content=b"x" * 40_000, headers=JSON).status_code == 400
    assert api(fake, "GET", "issue/OPS-9/properties/selfheal.page").status_code == 404
    assert api(fake, "DELETE", path).status_code == 204
    assert api(fake, "GET", path).status_code == 404


def test_fake_search_lag_per_search_and_reconcile_issues() -> None:
    """Cloud's search/jql lags creates; `reconcileIssues` asks for read-after-write on those ids."""
    cloud_auth = ("bot@example.com", "api-token")
    with lagging_cloud(searches=2) as jira:
        created = api(
            jira,
            "POST",
            "issue",
            auth=cloud_auth,
            headers=JSON,
            json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s"}},
        ).json()

        def search(**extra: Any) -> list[str]:
            body = {"jql": "project = OPS", "fields": ["summary"], **extra}
            found = api(jira, "POST", "search/jql", json=body, headers=JSON, auth=cloud_auth).json()
            return [i["key"] for i in found["issues"]]

        assert search(reconcileIssues=[int(created["id"])]) == ["OPS-1"]
        assert search() == []
        assert search() == ["OPS-1"]


def test_fake_limits_text_in_utf16_units(fake: JiraFake) -> None:
    """Jira counts Java string length: 20,000 emoji are 40,000 units, over the 32,767 limit."""
    emoji = "\U0001f525" * 20_000
    too_long = create_raw(fake, description=emoji)
    assert too_long.status_code == 400 and "32,767" in too_long.json()["errors"]["description"]
    assert create_raw(fake, description="\U0001f525" * 16_383).status_code == 201
    comment = api(fake, "POST", "issue/OPS-1/comment", json={"body": emoji}, headers=JSON)
    assert comment.status_code == 400


def test_fake_scoped_gateway_serves_the_api_and_names_the_site() -> None:
    site = "https://acme.atlassian.net"
    with JiraFake(
        users={"bot@example.com": "api-token"}, cloud=True, cloud_id="c0ffee", site_url=site
    ) as jira:
        info = httpx.get(f"{jira.url}/ex/jira/c0ffee/rest/api/2/serverInfo", timeout=5).json()
        assert info["deploymentType"] == "Cloud" and info["baseUrl"] == site
        other = httpx.get(f"{jira.url}/ex/jira/other/rest/api/2/serverInfo", timeout=5)
        assert other.status_code == 404


def test_fake_update_verbs_apply_on_create(fake: JiraFake) -> None:
    update = {"labels": [{"add": "from-update"}], "comment": [{"add": {"body": "first words"}}]}
    body = {
        "fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s"},
        "update": update,
    }
    assert api(fake, "POST", "issue", json=body, headers=JSON).status_code == 201
    assert fake.issues["OPS-1"]["fields"]["labels"] == ["from-update"]
    assert [c["body"] for c in fake.comments("OPS-1")] == ["first words"]


def test_fake_search_lag_hides_new_issues_like_jira_index() -> None:
    with JiraFake(search_lag_seconds=0.3) as lagging:
        create_raw(lagging)
        assert api(lagging, "GET", "search", params={"jql": "project = OPS"}).json()["total"] == 0
        threading.Event().wait(0.35)
        assert api(lagging, "GET", "search", params={"jql": "project = OPS"}).json()["total"] == 1


def test_fake_fail_next_and_rate_limit_headers(fake: JiraFake) -> None:
    fake.fail_next(status=429, count=2, retry_after=3)
    for _ in range(2):
        r = api(fake, "GET", "myself")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "3"
    assert api(fake, "GET", "myself").status_code == 200


# ---------------------------------------------------------------------------- the fake's webhooks


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def test_fake_webhooks_carry_jira_payloads_and_signatures(fake: JiraFake, receiver: WebhookReceiver) -> None:
    create_raw(fake, labels=["selfheal-inc-1"])
    fake.configure_webhook(receiver.url, secret="s3cret", token_in_url="tok")

    assert fake.add_comment_as("OPS-1", "alice", "/selfheal approve") == 200
    path, headers, body = receiver.received[-1]
    assert path.endswith("?token=tok")
    event = json.loads(body)
    assert event["webhookEvent"] == "comment_created"
    assert event["comment"]["body"] == "/selfheal approve"
    assert event["comment"]["author"]["name"] == "alice"
    # Data Center's comment events carry no issue: only the comment's own URL names it.
    assert event["comment"]["self"].endswith(
        f"/rest/api/2/issue/{fake.issues['OPS-1']['id']}/comment/{event['comment']['id']}"
    )
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature"] == f"sha256={expected}"
    first_id = headers["X-Atlassian-Webhook-Identifier"]

    assert fake.transition_as("OPS-1", "alice", "Approved") == 200
    _, headers2, body2 = receiver.received[-1]
    event = json.loads(body2)
    assert event["webhookEvent"] == "jira:issue_updated"
    assert event["user"]["name"] == "alice"
    assert event["issue"]["fields"]["labels"] == ["selfheal-inc-1"]
    status_items = [i for i in event["changelog"]["items"] if i["field"] == "status"]
    assert status_items == [
        {
            "field": "status",
            "fieldtype": "jira",
            "fieldId": "status",
            "from": "10000",
            "fromString": "To Do",
            "to": "10002",
            "toString": "Approved",
        }
    ]
    assert headers2["X-Atlassian-Webhook-Identifier"] != first_id

    assert fake.redeliver_last() == 200
    _, headers3, body3 = receiver.received[-1]
    assert body3 == body2
    assert headers3["X-Atlassian-Webhook-Identifier"] == headers2["X-Atlassian-Webhook-Identifier"]
    assert len(receiver.received) == 3


def test_fake_api_changes_fire_webhooks_only_when_asked(fake: JiraFake, receiver: WebhookReceiver) -> None:
    tracker = JiraTracker(settings_for(fake))
    key = tracker.create_or_update(content()).key
    fake.configure_webhook(receiver.url)
    tracker.comment(key, "bot says hi", "hi-1")
    assert fake.deliveries == []

    # Real Jira also reports our bot's own changes; the receiver must ignore them.
    fake.configure_webhook(receiver.url, api_events=True)
    tracker.comment(key, "bot says hi again", "hi-2")
    tracker.set_priority(key, "Highest")
    for _ in range(100):
        if len(receiver.received) >= 2:
            break
        threading.Event().wait(0.05)
    events = sorted((json.loads(body) for _, _, body in receiver.received), key=lambda e: e["webhookEvent"])
    assert [e["webhookEvent"] for e in events] == ["comment_created", "jira:issue_updated"]
    assert events[0]["comment"]["author"]["name"] == "bot"
    assert events[1]["user"]["name"] == "bot"
    assert events[1]["changelog"]["items"][0]["field"] == "priority"
    assert events[1]["changelog"]["items"][0]["toString"] == "Highest"


def test_fake_comment_can_also_send_issue_updated(fake: JiraFake, receiver: WebhookReceiver) -> None:
    create_raw(fake)
    fake.configure_webhook(receiver.url, comment_also_updates=True)
    fake.add_comment_as("OPS-1", "alice", "hello")
    events = [json.loads(body) for _, _, body in receiver.received]
    assert [(e["webhookEvent"], e.get("issue_event_type_name")) for e in events] == [
        ("comment_created", None),
        ("jira:issue_updated", "issue_commented"),
    ]
    assert "changelog" not in events[1]
    assert events[1]["comment"]["body"] == "hello"


def test_update_page_edits_a_closed_issue_in_place_and_never_creates(
    fake: JiraFake, tracker: JiraTracker
) -> None:
    """The closing page update may run after a human moved the issue to Done: it edits, not creates."""
    key = tracker.create_or_update(content()).key
    tracker.transition(key, "Done")
    tracker.update_page(key, content(description="Investigation\nfinal page"))
    assert len(fake.issues) == 1
    assert fake.issues[key]["fields"]["description"] == "h3. Investigation\n\nfinal page"
    puts = fake.count("PUT", rf"/rest/api/2/issue/{key}")
    tracker.update_page(key, content(description="Investigation\nfinal page"))
    assert fake.count("PUT", rf"/rest/api/2/issue/{key}") == puts, "an unchanged page sends nothing"
    with pytest.raises(TrackerError):
        tracker.update_page("OPS-999", content())


# ------------------------------------------------------------------ incident_for_issue (the webhook's)


def test_incident_for_issue_reads_the_label_jira_stores_by_key_or_id(
    fake: JiraFake, tracker: JiraTracker
) -> None:
    incident_id = "0123456789ab-a1b2c3"
    key = tracker.create_or_update(content(incident_id)).key
    issue_id = fake.issues[key]["id"]
    assert tracker.incident_for_issue(key) == incident_id
    assert tracker.incident_for_issue(issue_id) == incident_id
    assert tracker.incident_for_issue("OPS-999") is None
    assert tracker.incident_for_issue("99999") is None


def test_incident_for_issue_ignores_other_projects_and_foreign_labels() -> None:
    with JiraFake(users={"bot": "token"}, projects=("OPS", "SEC")) as fake:
        tracker = JiraTracker(settings_for(fake))
        try:
            other = create_raw(fake, project={"key": "SEC"}, labels=["selfheal-0123456789ab-a1b2c3"])
            assert other.status_code == 201, other.text
            assert tracker.incident_for_issue(other.json()["key"]) is None
            plain = create_raw(fake, labels=["selfheal", "selfheal-escalated", "selfheal-not-an-id"])
            assert tracker.incident_for_issue(plain.json()["key"]) is None
            fake.fail_next(503, method="GET", path=r"/rest/api/2/issue/OPS-2")
            with pytest.raises(TrackerError) as err:
                tracker.incident_for_issue("OPS-2")
            assert err.value.retryable
        finally:
            tracker.close()
