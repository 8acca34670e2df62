"""Cross-referencing: the builtin investigator ranks the change the evidence names, not the closest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from investigation.builtin import investigate
from investigation.xref import cosmetic, gather_clues, match_change
from models.evidence import ChangeRef, Evidence, EvidenceSection, LogLine, SpanRef, TraceRef
from models.incident import IncidentView, Stage, TrackedAlert
from models.investigation import Investigation

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def change(
    sha: str,
    minutes: float,
    summary: str,
    paths: list[str],
    diff: str = "",
    *,
    touches: bool = True,
    service: str = "",
) -> ChangeRef:
    return ChangeRef(
        repo="app",
        sha=sha * 8,
        author="dev",
        committed_at=START - timedelta(minutes=minutes),
        summary=summary,
        paths=paths,
        touches_service=touches,
        service=service,
        diff=diff,
    )


def error(line: str, first_minutes: float = -2, service: str = "") -> LogLine:
    return LogLine(
        at=START,
        first_at=START + timedelta(minutes=first_minutes),
        line=line,
        count=50,
        labels={"service": service} if service else {},
    )


def run(
    changes: list[ChangeRef],
    logs: list[LogLine] = (),  # type: ignore[assignment]
    traces: list[TraceRef] = (),  # type: ignore[assignment]
    *,
    service: str = "shop",
    labels: dict[str, str] | None = None,
    depends_on: list[str] | None = None,
) -> Investigation:
    alert = TrackedAlert(
        fingerprint="f",
        status="firing",
        labels={"alertname": "ErrorBudgetBurnFast", "service": service, **(labels or {})},
        annotations={},
        startsAt=START,
    )
    sections = [
        EvidenceSection(source="changes", status="ok", changes=changes, depends_on=depends_on or []),
        EvidenceSection(source="logs", status="ok", logs=list(logs)),
        EvidenceSection(source="traces", status="ok", traces=list(traces)),
    ]
    view = IncidentView(
        id="inc",
        group_id="g",
        group_key="k",
        receiver="selfheal",
        stage=Stage.INVESTIGATING,
        status="firing",
        service=service,
        alertname="ErrorBudgetBurnFast",
        opened_at=START,
        alerts=[alert],
        evidence=Evidence(incident_id="inc", gathered_at=START, sections=sections),
    )
    return investigate(view, None)


def top(inv: Investigation) -> str:
    h = inv.hypotheses[0]
    return f"{h.title}\n{h.detail}\n{' '.join(h.evidence)}"


RENAME_DIFF = """\
--- a/migrations/0042.py
+++ b/migrations/0042.py
+    op.alter_column("users", "user_name", new_column_name="username")
"""


def test_a_column_named_by_a_new_error_outranks_a_closer_css_change() -> None:
    inv = run(
        [
            change("c", 3, "profile: more air", ["static/profile.css"], "-  margin: 4px;\n+  margin: 8px;"),
            change("a", 50, "rename column user_name to username", ["migrations/0042.py"], RENAME_DIFF),
        ],
        [error('ERROR column "user_name" does not exist')],
    )
    text = top(inv)
    assert "aaaaaaa" in text and "logs:0" in text
    assert 'op.alter_column("users", "user_name"' in text, "quotes the diff line that matches the error"
    second = next(h for h in inv.hypotheses if "ccccccc" in h.title)
    assert "timing only" in second.detail and "name another change" in second.detail
    assert inv.proposed_fix is not None and "aaaaaaa" in inv.proposed_fix.rationale


def test_a_column_name_does_not_match_a_longer_identifier() -> None:
    """user_name is not username: a change that only mentions `username` is not named."""
    inv = run(
        [change("b", 30, "add username index", ["db/index.sql"], "+CREATE INDEX ON users (username);")],
        [error('ERROR column "user_name" does not exist')],
    )
    assert "timing only" in inv.hypotheses[0].detail


def test_an_error_trace_route_ties_the_change_to_that_route_file() -> None:
    traces = [
        TraceRef(trace_id=f"t{i}", root_service="shop", root_name="POST /api/checkout") for i in range(3)
    ]
    inv = run(
        [
            change("5", 2, "search page size", ["services/shop/routes/search.py"], "-PAGE = 20\n+PAGE = 50"),
            change("c", 30, "coupon before tax", ["services/shop/routes/checkout.py"], "-a\n+b"),
        ],
        traces=traces,
    )
    text = top(inv)
    assert "ccccccc" in text and "traces:t0" in text and "routes/checkout.py" in text


def test_an_upstream_named_in_the_log_makes_its_change_a_suspect() -> None:
    inv = run(
        [
            change("d", 40, "fix typo", ["services/checkout/README.md"], "-an payment\n+and payment"),
            change(
                "9",
                4,
                "smaller pool",
                ["services/payments/config/app.yaml"],
                touches=False,
                service="payments",
            ),
        ],
        [error("ERROR upstream payments returned 503")],
        service="checkout",
    )
    text = top(inv)
    assert "9999999" in text and "names the service 'payments'" in text
    readme = next(h for h in inv.hypotheses if "ddddddd" in h.title)
    assert "only touches docs" in readme.detail and readme.confidence < 0.2


def test_a_change_in_an_unrelated_service_stays_noise() -> None:
    inv = run(
        [change("9", 2, "billing template", ["services/billing/x.html"], touches=False, service="billing")],
        [error("ERROR upstream payments returned 503")],
        service="checkout",
    )
    assert inv.hypotheses[0].title.startswith("New error")
    billing = next(h for h in inv.hypotheses if "9999999" in h.title)
    assert "neither the evidence names nor the service depends on" in billing.detail


def test_dependencies_from_settings_and_from_child_spans_count() -> None:
    pay = change("9", 3, "pool size", ["services/payments/app.yaml"], touches=False, service="payments")
    configured = run([pay], service="checkout", depends_on=["payments"])
    assert "a dependency (settings: depends_on)" in configured.hypotheses[0].detail
    assert configured.hypotheses[0].confidence >= 0.5
    spans = [
        SpanRef(service="checkout", name="POST /pay", error=True),
        SpanRef(service="payments", name="charge", parent_service="checkout"),
    ]
    seen = run([pay], traces=[TraceRef(trace_id="t9", root_name="GET /", spans=spans)], service="checkout")
    assert "a dependency (traces:t9)" in seen.hypotheses[0].detail


def test_a_docs_only_change_does_not_outrank_a_new_certificate_error() -> None:
    inv = run(
        [
            change(
                "d", 5, "document retries", ["services/shop/docs/retries.md", "services/shop/tests/test_x.py"]
            )
        ],
        [error("ERROR x509: certificate has expired (bank-gateway)")],
    )
    assert "certificate has expired" in inv.hypotheses[0].title
    assert inv.proposed_fix is None, "nothing to revert"


def test_comment_and_formatting_only_diffs_are_discounted() -> None:
    comments = change("c", 2, "explain", ["app.py"], "--- a/app.py\n+++ b/app.py\n-# old\n+# clearer")
    fmt = change("f", 2, "black", ["app.py"], "--- a/app.py\n+++ b/app.py\n-x=f( 1,2 )\n+x = f(1, 2)")
    real = change("r", 2, "pool", ["app.py"], "--- a/app.py\n+++ b/app.py\n-pool = 10\n+pool = 2")
    assert cosmetic(comments) == "only changes comments"
    assert cosmetic(fmt) == "only changes formatting"
    assert cosmetic(real) == ""
    assert cosmetic(change("t", 2, "t", ["tests/test_a.py"])) == "only touches tests"


def test_alert_labels_name_things_too() -> None:
    inv = run(
        [
            change("1", 2, "other", ["services/shop/a.py"]),
            change(
                "2", 20, "flag new-checkout-flow on", ["services/shop/flags.yaml"], "+new-checkout-flow: true"
            ),
        ],
        labels={"feature_flag": "new-checkout-flow", "severity": "critical"},
    )
    assert "2222222" in top(inv) and "alert:ErrorBudgetBurnFast" in top(inv)


def test_old_noise_names_nothing() -> None:
    """A loud line from long before the onset is background: what it names ties no change."""
    inv = run(
        [
            change("1", 3, "near", ["services/shop/a.py"]),
            change("2", 30, "tune legacy_cart", ["services/shop/b.py"], "+legacy_cart: off"),
        ],
        [error("ERROR legacy_cart lookup failed", first_minutes=-300)],
    )
    assert "1111111" in inv.hypotheses[0].title


def test_close_top_two_say_what_would_tell_them_apart() -> None:
    """Two changes only timing ties to the cause, minutes apart: which one is a coin toss."""
    inv = run(
        [
            change("1", 3, "pool", ["services/shop/a.yaml"], "-a\n+b"),
            change("2", 4, "timeout", ["services/shop/b.yaml"], "-c\n+d"),
        ],
    )
    assert "A close call" in inv.summary
    assert inv.open_questions[0].startswith("Close call between changes:app@1111111")
    assert "changes:app@2222222" in inv.open_questions[0] and "reverting one" in inv.open_questions[0]
    # A change and a new error of nearly the same weight: does the diff touch what fails?
    mixed = run(
        [change("1", 110, "pool", ["services/shop/a.yaml"], "-a\n+b")],
        [error("ERROR stock lookup failed for sku 42")],
    )
    assert mixed.hypotheses[0].confidence - mixed.hypotheses[1].confidence < 0.1
    assert any("'s diff touch what logs:0 shows failing" in q for q in mixed.open_questions)
    # Evidence names one of them: not a close call.
    named = run(
        [
            change("1", 3, "pool", ["services/shop/a.yaml"], "-a\n+b"),
            change("2", 4, "timeout", ["services/shop/b.yaml"], "-read_timeout: 5\n+read_timeout: 0.05"),
        ],
        [error("ERROR read_timeout exceeded calling stock")],
    )
    assert "2222222" in named.hypotheses[0].title
    assert not any(q.startswith("Close call") for q in named.open_questions)


def test_hostile_text_stays_data() -> None:
    hostile = "{{ 7*7 }} $(rm -rf /) <script>x</script> [x|http://evil] .*("
    clues = gather_clues("shop", logs=[(0, error(f"ERROR {hostile} user_name"))])
    c = change("h", 5, hostile, ["a.py"], f"+{hostile}\n+user_name = 1")
    found = match_change(c, clues)
    assert found and found[0].where == "diff"
    inv = run([c], [error(f"ERROR {hostile} user_name")])
    assert hostile in inv.hypotheses[0].title, "quoted back verbatim, never rendered or evaluated"
    assert "49" not in inv.summary


def test_clues_are_bounded() -> None:
    line = " ".join(f"key_{i}=v" for i in range(5000))
    clues = gather_clues("shop", logs=[(0, error(f"ERROR {line}"))])
    assert 0 < len(clues.clues) <= 80


LIMIT_HUNK = """\
--- a/fleet/shop.yaml
+++ b/fleet/shop.yaml
@@ -1,3 +1,3 @@
 fleet: shop
-workers: 8
+workers: 64
 max_open_files: 4096
"""


def test_a_key_beside_the_edit_ties_the_change_weaker_than_an_edited_line() -> None:
    """The error names a limit the diff shows beside its edit: the change edits that hunk."""
    clues = gather_clues("shop", logs=[(0, error("ERROR accept: too many open files (max_open_files)"))])
    beside = change("b", 40, "more workers", ["fleet/shop.yaml"], LIMIT_HUNK, touches=False, service="shop")
    found = match_change(beside, clues)
    assert found and found[0].where == "context" and found[0].quote == "max_open_files: 4096"
    inv = run(
        [change("d", 5, "runbook link", ["services/shop/RUNBOOK.md"], "-a\n+b"), beside],
        [error("ERROR accept: too many open files (max_open_files)")],
    )
    assert "bbbbbbb" in inv.hypotheses[0].title and "edits the lines around it" in inv.hypotheses[0].detail
    edited = change(
        "e",
        40,
        "lower it",
        ["fleet/shop.yaml"],
        "+++ b/fleet/shop.yaml\n-max_open_files: 4096\n+max_open_files: 64",
    )
    both = run([beside, edited], [error("ERROR accept: too many open files (max_open_files)")])
    assert "eeeeeee" in both.hypotheses[0].title, "a changed line outranks an unchanged one beside the edit"


def test_a_change_belonging_to_the_service_counts_as_touching_it() -> None:
    """A change attributed to the service (its fleet file, outside the service's paths) is a suspect."""
    fleet = change(
        "f", 20, "shop: 8 -> 64 workers", ["fleet/shop.yaml"], "-w: 8\n+w: 64", touches=False, service="shop"
    )
    assert "touches the service's paths" in run([fleet]).hypotheses[0].detail


def test_a_name_is_not_one_word_of_a_hyphenated_name() -> None:
    """`payments` in an error is not the `payments-api` prefix of a summary; `--payments` is a flag."""
    clues = gather_clues("shop", logs=[(0, error('ERROR lock timeout on "payments"'))])
    prefix = change("p", 2, "payments-api: copy edits", ["services/shop/en.yml"], "-a: x\n+a: y")
    flag = change("g", 2, "flags", ["services/shop/run.sh"], "-exec app\n+exec app --payments=off")
    suffix = change("s", 2, "legacy-payments: remove", ["services/shop/legacy.py"], "-x = 1\n+x = 2")
    assert match_change(prefix, clues) == [] and match_change(suffix, clues) == []
    assert [m.where for m in match_change(flag, clues)] == ["diff"]


def test_a_file_the_errors_name_is_not_docs() -> None:
    """A .txt the running service reports reading is data, however much it looks like docs."""
    data = change("t", 20, "import patterns", ["services/shop/data/blocklist.txt"], "+/")
    inv = run([data], [error("WARN blocked: matched pattern '/' (blocklist.txt:104)")])
    assert "ttttttt" in inv.hypotheses[0].title and "only touches docs" not in inv.hypotheses[0].detail
    assert cosmetic(data) == "only touches docs", "unnamed, the same change would be discounted"
