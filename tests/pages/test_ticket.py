"""The ticket page: one builder, three renderers, every untrusted string inert, a hard size cap, and
Jira REST v3 (ADF) through the real `jira` client against the fake."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.base import TicketContent, dedup_marker
from connectors.jira.settings import JiraSettings
from connectors.jira.tracker import JiraTracker
from connectors.local_tracker import LocalTracker
from models.investigation import AgentRun, EditReads
from pages.document import JIRA_TEXT_LIMIT, TRIMMED_NOTE, Document, cut_utf16, utf16_len
from pages.render import (
    adf_plain_text,
    render,
    render_adf,
    render_adf_fitted,
    render_markdown,
    render_wiki,
)
from pages.ticket import build_page
from tests.support.jira import ADF_REQUIRED, JiraFake, adf_problem
from tests.support.page_fixture import HOSTILE, WORKFLOW_URL, decided, view

SECTIONS = [
    "selfheal incident inc-7",
    "Impact",
    "Evidence",
    "Metric graphs",
    "Log excerpt",
    "Error traces",
    "Suspect changes",
    "Similar incidents",
    "Investigation",
    "Hypotheses",
    "Proposed fix",
    "Remediation",
    "Timeline",
]


def text_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "text":
            yield node
        for child in node.get("content") or []:
            yield from text_nodes(child)


def links(node: Any) -> list[str]:
    return [m["attrs"]["href"] for t in text_nodes(node) for m in t.get("marks", []) if m["type"] == "link"]


# ------------------------------------------------------------------------------------ structure


def test_markdown_page_has_every_section_in_order_with_its_content() -> None:
    page = render_markdown(build_page(view(), WORKFLOW_URL))
    heads = [line.lstrip("#").strip() for line in page.splitlines() if line.startswith("#")]
    assert [h.replace("\\", "") for h in heads] == [*SECTIONS[:10], "Open questions", *SECTIONS[10:]]
    assert "**What fired:** HighErrorRate" in page and "**Severity:** critical" in page
    assert f"(<{WORKFLOW_URL}>)" in page and "(<https://runbooks.example/HighErrorRate>)" in page
    assert "**affected users: 42**" in page and 'sum(active_users{service="checkout"})' in page
    assert "![graph of error ratio](inc-7-graph-1.png)" in page
    assert "x3 ERROR pool exhausted after 0ms" in page
    assert "(<https://grafana.example/explore?trace=abc123def456>)" in page
    assert (
        "| Dev Eloper | 12m 3s before | lower the pool size | services/checkout/pool.yaml | +3 -1 |" in page
    )
    assert "(<https://git.example/config/commit/0123456789abcdef0123>)" in page
    assert "-  size: 50\n+  size: 5\n" in page, "the suspect change's changed lines are quoted"
    assert "hunter2" not in page.split("Suspect changes", 1)[1].split("Similar", 1)[0], "and redacted"
    assert "| healed | raise the pool size to 50 |" in page
    assert "| 1 | 80% | **Pool size lowered**" in page and "changes:config@0123456789, logs:0" in page
    assert "none — novel incident" in page and "Was the change deployed everywhere?" in page
    assert "- edit services/checkout/pool.yaml" in page, "the proposal's steps"
    assert "` /selfheal approve `" in page
    assert "` selfheal approve|reject inc-7 ` with your own API token" in page
    assert "**rolled\\_back**" in page and "` fedcba987654 `" in page
    assert (
        "The last 50 of 80 events." in page and "event number 79" in page and "event number 29 " not in page
    )
    assert "password=hunter2" not in page and "password=\\[REDACTED\\]" in page, "annotations are redacted"


def test_wiki_page_has_sections_links_image_and_noformat_logs() -> None:
    page = render_wiki(build_page(view(), WORKFLOW_URL))
    for head in ("h2. Impact", "h2. Evidence", "h3. Log excerpt", "h2. Suspect changes", "h2. Timeline"):
        assert f"\n{head}\n" in page
    assert f"|{WORKFLOW_URL}]" in page and "!inc-7-graph-1.png!" in page
    assert "{noformat}\n2026-03-01 12:00:00 x3 ERROR pool exhausted after 0ms\n" in page
    assert "||commit||author||alert start||summary||paths||diff||score||" in page
    assert "{{/selfheal approve}}" in page


def test_adf_page_is_valid_with_native_tables_links_and_code() -> None:
    doc = render_adf(build_page(view(), WORKFLOW_URL))
    assert adf_problem(doc) is None
    kinds = [n["type"] for n in doc["content"]]
    assert kinds.count("table") >= 6 and "codeBlock" in kinds and "bulletList" in kinds
    heads = [adf_plain_text(n) for n in doc["content"] if n["type"] == "heading"]
    assert heads[:4] == [*SECTIONS[:3], "Metric graphs"]
    assert WORKFLOW_URL in links(doc) and "https://git.example/config/commit/0123456789abcdef0123" in links(
        doc
    )
    assert "inc-7-graph-1.png" in adf_plain_text(doc), "ADF cannot embed by file name: the graph is named"


def test_patch_shown_when_no_playbook_proposal_and_decision_replaces_the_how_to() -> None:
    v = decided(view().model_copy(update={"proposal": None}))
    page = render_markdown(build_page(v, ""))
    assert "patch fix for ` config `: restore the pool size" in page and "+size: 50" in page
    assert "Decision: approve by oncall via api" in page and "/selfheal approve" not in page


# ------------------------------------------------------------------------------------ hostile input


def test_adf_keeps_every_hostile_string_verbatim_in_text_nodes() -> None:
    doc = render_adf(build_page(view(hostile=True), WORKFLOW_URL))
    assert adf_problem(doc) is None
    texts = [t["text"] for t in text_nodes(doc)]
    for bad in HOSTILE:
        assert any(bad.replace("\n", "\n") in t for t in texts), bad
    assert not any("evil.example" in url for url in links(doc)), "no link from untrusted text"
    assert {n["type"] for n in doc["content"]} <= {"heading", "paragraph", "bulletList", "table", "codeBlock"}


def _unescaped(page: str, token: str) -> bool:
    """True when `token` occurs in `page` without a backslash escaping its first character."""
    return any(page[i - 1 : i] != "\\" for i in (m.start() for m in re.finditer(re.escape(token), page)))


def test_wiki_cannot_be_injected() -> None:
    page = render_wiki(build_page(view(hostile=True), WORKFLOW_URL))
    blocks = page.split("{noformat}")
    assert len(blocks) % 2 == 1, "every no-format block is closed by our own marker"
    outside = "".join(blocks[0::2])
    for token in ("[click", "*bold", "{{code", "!evil", "|cell", "{color", "[md link", "|http://evil"):
        assert not _unescaped(outside, token), token
    assert not re.search(r"^(h[1-6]|bq)\.", outside, re.MULTILINE | re.IGNORECASE) or all(
        line.startswith(("h2. ", "h3. ")) and "Fake" not in line
        for line in outside.splitlines()
        if re.match(r"^(h[1-6]|bq)\.", line)
    )
    assert "\\\\" not in outside, "a backslash pair is a line break in wiki markup"
    inside = "".join(blocks[1::2])
    assert "closed early" in inside and "{ noformat}closed early{ noformat}" in inside


def test_markdown_is_escaped() -> None:
    page = render_markdown(build_page(view(hostile=True), WORKFLOW_URL))
    prose = re.sub(r"^(`{3,}).*?^\1$", "", page, flags=re.MULTILINE | re.DOTALL)
    for token in ("[click here", "*bold", "<script", "[md link", "![img", "{color"):
        assert not _unescaped(prose, token), token
    assert "](<http://evil" not in prose and "](http://evil" not in prose
    assert not re.search(r"^#+ md heading", page, re.MULTILINE)
    fences = re.findall(r"^(`{3,})text$", page, re.MULTILINE)
    assert fences and all(len(f) >= 4 for f in fences), "fences outgrow the ``` inside the logs"


# ------------------------------------------------------------------------------------ size cap


@pytest.mark.parametrize("fmt", ["wiki", "adf", "markdown"])
def test_page_is_capped_trimming_logs_and_timeline_first(fmt: Any) -> None:
    big = view(timeline=50, log_lines=20)
    for line in big.evidence.sections[2].logs:  # type: ignore[union-attr]
        line.line = "x" * 1500
    for ev in big.timeline:
        ev.message = "y" * 480
    doc = build_page(big, WORKFLOW_URL)
    out = render(doc, fmt)
    assert len(out) <= JIRA_TEXT_LIMIT
    assert TRIMMED_NOTE in out and "Suspect changes" in out and "Proposed fix" in out
    if fmt == "adf":
        assert adf_problem(json.loads(out)) is None
    tiny = render(doc, fmt, limit=3000)
    assert len(tiny) <= 3000


@pytest.mark.parametrize("fmt", ["wiki", "adf", "markdown"])
def test_page_cap_counts_utf16_units_as_jira_does(fmt: Any) -> None:
    """An emoji is one Python character but two UTF-16 units, and Jira counts the latter."""
    big = view(timeline=50)
    for ev in big.timeline:
        ev.message = "\U0001f525" * 450  # ~22,500 characters, ~45,000 UTF-16 units
    out = render(build_page(big, WORKFLOW_URL), fmt)
    assert utf16_len(out) <= JIRA_TEXT_LIMIT
    assert TRIMMED_NOTE in out


def test_utf16_helpers_never_split_a_surrogate_pair() -> None:
    assert utf16_len("a\U0001f525") == 3
    assert cut_utf16("a\U0001f525b", 2) == "a"
    assert cut_utf16("a\U0001f525b", 3) == "a\U0001f525"


# ------------------------------------------------------------------------------------ trackers


def test_local_tracker_stores_markdown(tmp_path: Any) -> None:
    tracker = LocalTracker(tmp_path / "t.db")
    page = build_page(view(), WORKFLOW_URL)
    ref = tracker.create_or_update(TicketContent(incident_id="inc-7", summary="s", page=page))
    assert tracker.get(ref.key)["description"] == render(page, "markdown")


@pytest.fixture
def fake() -> Iterator[JiraFake]:
    with JiraFake(users={"bot@example.com": "api-token"}, cloud=True) as f:
        yield f


@pytest.fixture
def v3(fake: JiraFake) -> Iterator[JiraTracker]:
    settings = JiraSettings(
        url=fake.url, project="OPS", user="bot@example.com", api_token="api-token", cloud=True, api_version=3
    )
    t = JiraTracker(settings)
    yield t
    t.close()


def test_v3_create_update_page_and_comment_dedup_round_trip(fake: JiraFake, v3: JiraTracker) -> None:
    first = build_page(view(), WORKFLOW_URL)
    content = TicketContent(incident_id="inc-7", summary="HighErrorRate on checkout", page=first)
    ref = v3.create_or_update(content)
    assert fake.count("POST", r"^/rest/api/3/issue$") == 1
    stored = fake.issue_v3(ref.key)["fields"]["description"]
    assert stored == render_adf_fitted(first) and adf_problem(stored) is None

    assert v3.create_or_update(content) == ref, "search before create finds it again"
    assert len(fake.issues) == 1 and fake.count("PUT", rf"/rest/api/3/issue/{ref.key}") == 0, "unchanged"

    closing = build_page(decided(view()), WORKFLOW_URL)
    v3.transition(ref.key, "Done")
    v3.update_page(ref.key, content.model_copy(update={"page": closing}))
    assert fake.issue_v3(ref.key)["fields"]["description"] == render_adf_fitted(closing)
    assert "Decision: approve by oncall" in fake.issues[ref.key]["fields"]["description"], "v2 shows text"

    body = "Escalated. [x|http://evil.example] {noformat}"
    assert v3.comment(ref.key, body, "inc-7:esc:0") is True
    assert v3.comment(ref.key, body, "inc-7:esc:0") is False, "the retry finds its marker in ADF"
    comments = fake.comments(ref.key, v3=True)
    assert len(comments) == 1 and adf_problem(comments[0]["body"]) is None
    assert body in adf_plain_text(comments[0]["body"]) and dedup_marker("inc-7:esc:0") in adf_plain_text(
        comments[0]["body"]
    )
    assert fake.count("POST", rf"/rest/api/3/issue/{ref.key}/comment") == 1


def test_fake_rejects_what_jira_v3_rejects(fake: JiraFake) -> None:
    auth = ("bot@example.com", "api-token")
    base = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s"}
    with httpx.Client(base_url=fake.url, auth=auth) as http:
        for description, needle in [
            ("plain text", ADF_REQUIRED),
            ({"type": "doc", "content": []}, "version 1"),
            ({"version": 1, "type": "doc", "content": [{"type": "marquee", "content": []}]}, "marquee"),
            (
                {
                    "version": 1,
                    "type": "doc",
                    "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}],
                },
                "non-empty",
            ),
        ]:
            resp = http.post("/rest/api/3/issue", json={"fields": {**base, "description": description}})
            assert resp.status_code == 400, description
            data = resp.json()
            assert data["errorMessages"] == [] and needle in data["errors"]["description"]
        ok = http.post(
            "/rest/api/3/issue", json={"fields": {**base, "description": render_adf(Document.of_text("hi"))}}
        )
        assert ok.status_code == 201
        key = ok.json()["key"]
        bad = http.post(f"/rest/api/3/issue/{key}/comment", json={"body": "a string"})
        assert bad.status_code == 400 and bad.json()["errors"]["comment"] == ADF_REQUIRED
        assert http.put(f"/rest/api/3/issue/{key}", json={"fields": {"description": "x"}}).status_code == 400
        # v2 still takes wiki strings and shows ADF-made descriptions as text.
        assert http.get(f"/rest/api/2/issue/{key}").json()["fields"]["description"] == "hi"


def test_v2_comment_body_is_escaped_and_its_marker_still_dedups(fake: JiraFake) -> None:
    settings = JiraSettings(
        url=fake.url, project="OPS", user="bot@example.com", api_token="api-token", cloud=True
    )
    tracker = JiraTracker(settings)
    try:
        key = tracker.create_or_update(
            TicketContent(incident_id="inc-9", summary="s", page=Document.of_text("hi"))
        ).key
        body = "Alert group changed:\n- [x|http://evil.example] *now* {noformat}\nh1. big"
        assert tracker.comment(key, body, "inc-9:changed") is True
        assert tracker.comment(key, body, "inc-9:changed") is False
        [stored] = [c["body"] for c in fake.comments(key)]
        assert stored.startswith(
            "Alert group changed:\n\\- \\[x\\|http://evil.example\\] \\*now\\* \\{noformat\\}"
        )
        assert "\nh1\\. big\n" in stored and stored.endswith(dedup_marker("inc-9:changed"))
    finally:
        tracker.close()


def test_untrusted_text_at_the_start_of_a_line_is_not_line_markup() -> None:
    from pages.document import Bullets, Paragraph, Table, Text

    starts = [
        "h1. Fake",
        "bq. quote",
        "# item",
        "* item",
        "- item",
        "1. item",
        "---",
        "|| head ||",
        "> quote",
    ]
    doc = Document(
        blocks=[Paragraph(runs=[Text(text=s)]) for s in starts]
        + [
            Bullets(items=[[Text(text=s)] for s in starts]),
            Table(header=["h"], rows=[[[Text(text="h2. x")]]]),
        ]
    )
    wiki = render_wiki(doc)
    for line in wiki.splitlines():
        body = line[2:] if line.startswith("* ") else line.strip("|")
        assert not re.match(r"(h[1-6]|bq)\.|[#*\-|]", body), line
    md = render_markdown(doc)
    for line in md.splitlines():
        if line.startswith("|"):
            continue
        body = line[2:] if line.startswith("- ") else line
        assert not re.match(r"#|[*+\-]\s|\d+[.)]|-{3}|>", body), line


def test_llm_run_usage_and_cost_on_the_page() -> None:
    run = AgentRun(
        model="gpt-4o-mini",
        outcome="budget_exhausted",
        stopped_by="day_cost",
        requests=4,
        tool_calls={"read_evidence": 2, "git_log": 1},
        input_tokens=12_345,
        output_tokens=678,
        cost_usd=0.0123,
        wall_seconds=3.25,
        edits=[EditReads(path="services/checkout/pool.yaml", read_before=["README.md"])],
    )
    v = view()
    assert v.investigation is not None
    investigation = v.investigation.model_copy(update={"run": run})
    page = render_markdown(build_page(v.model_copy(update={"investigation": investigation}), ""))
    page = page.replace("\\", "")  # Markdown escapes
    assert "**Model run:** ` gpt-4o-mini `, budget_exhausted (stopped by the day_cost budget), 3.2 s" in page
    assert "4 model requests, 12,345 input and 678 output tokens, estimated cost $0.0123." in page
    assert "**Tool calls:** 3 (read_evidence 2, git_log 1)." in page
    assert "**Edited** ` services/checkout/pool.yaml ` after reading README.md." in page

    unpriced = investigation.model_copy(update={"run": run.model_copy(update={"cost_usd": None})})
    page = render_markdown(build_page(v.model_copy(update={"investigation": unpriced}), ""))
    assert "cost unknown (no price for gpt-4o-mini in investigation.llm.prices)" in page.replace("\\", "")
