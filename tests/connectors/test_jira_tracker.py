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
