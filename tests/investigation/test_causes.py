"""Causes no change made: the builtin investigator names them instead of blaming a nearby change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from investigation.builtin import investigate
from investigation.causes import hosts, line_cause
from models.evidence import ChangeRef, Evidence, EvidenceSection, LogLine, MetricSeries
from models.incident import IncidentView, Stage, TrackedAlert
from models.investigation import Investigation

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def change(sha: str, minutes: float, summary: str, paths: list[str], diff: str = "") -> ChangeRef:
    return ChangeRef(
        repo="app",
        sha=sha * 8,
        author="dev",
        committed_at=START - timedelta(minutes=minutes),
        summary=summary,
        paths=paths,
        touches_service=True,
        diff=diff,
    )


def line(text: str, first_minutes: float = -2, count: int = 100) -> LogLine:
    return LogLine(at=START, first_at=START + timedelta(minutes=first_minutes), line=text, count=count)


def series(name: str, base: float, level: float, onset_minutes: float) -> MetricSeries:
    """A 1 h series at 30 s steps: `base` until `onset_minutes` (relative to START), then `level`."""
    points = []
    t = START - timedelta(hours=1)
    while t <= START + timedelta(minutes=2):
        value = level if t >= START + timedelta(minutes=onset_minutes) else base
        points.append((t.timestamp(), value))
        t += timedelta(seconds=30)
    return MetricSeries(name=name, query=name, points=points)


def investigate_with(
    changes: list[ChangeRef],
    logs: list[LogLine] = (),  # type: ignore[assignment]
    metrics: list[MetricSeries] = (),  # type: ignore[assignment]
    labels: dict[str, str] | None = None,
) -> Investigation:
    alert = TrackedAlert(
        fingerprint="f",
        status="firing",
        labels={"alertname": "OrdersFailing", "service": "orders", **(labels or {})},
        annotations={},
        startsAt=START,
    )
    sections = [
        EvidenceSection(source="changes", status="ok", changes=changes),
        EvidenceSection(source="logs", status="ok", logs=list(logs)),
        EvidenceSection(source="metrics", status="ok", metrics=list(metrics)),
    ]
    view = IncidentView(
        id="inc",
        group_id="g",
        group_key="k",
        receiver="selfheal",
        stage=Stage.INVESTIGATING,
        status="firing",
        service="orders",
        alertname="OrdersFailing",
        opened_at=START,
        alerts=[alert],
        evidence=Evidence(incident_id="inc", gathered_at=START, sections=sections),
    )
    return investigate(view, None)


def fix_kind(inv: Investigation) -> str:
    return inv.proposed_fix.kind if inv.proposed_fix else "none"


CONFIG_TWEAK = change(
    "c", 4, "orders: page size 20 -> 50", ["services/orders/config.yaml"], "-page: 20\n+page: 50"
)


# --- reading one line ------------------------------------------------------------------------


def test_each_kind_of_line_is_told_apart() -> None:
    cert = line_cause(0, line("ERROR tls: x509: certificate has expired (CN=pay.partner.example)"))
    assert cert is not None and cert.kind == "certificate" and cert.names[0] == "pay.partner.example"
    provider = line_cause(1, line("ERROR GET https://geo.vendor.example/v2/lookup: 502 Bad Gateway"))
    assert provider is not None and provider.kind == "provider" and provider.names == ("geo.vendor.example",)
    network = line_cause(2, line("ERROR dial 10.0.3.4:5432: i/o timeout (packet loss 30% via nat-7f)"))
    assert network is not None and network.kind == "network"
    full = line_cause(3, line('ERROR bigint out of range for column "event_id"'))
    assert full is not None and full.kind == "exhaustion" and "event_id" in full.names


def test_lines_a_change_may_well_cause_name_no_cause() -> None:
    """A bug, a bare timeout and running out of memory or threads are what a bad deploy looks like."""
    for text in (
        "panic: runtime error: index out of range [5] with length 5",
        "ERROR call to db.orders.example timed out after 5s",
        "ERROR OOMKilled (limit 2Gi)",
        "ERROR java.lang.OutOfMemoryError: unable to create new native thread",
        "ERROR session token expired for user 42",
    ):
        assert line_cause(0, line(text)) is None, text


def test_a_host_of_the_service_itself_or_a_stray_number_blames_no_provider() -> None:
    """`orders.example.com` failing is the orders symptom; `512` rows is not an HTTP 512."""
    assert (
        line_cause(0, line("ERROR GET https://orders.example.com/health: 503 Service Unavailable"), "orders")
        is None
    )
    assert line_cause(0, line("ERROR sync to https://crm.vendor.example failed after 512 rows")) is None
    assert line_cause(0, line("ERROR sync to https://crm.vendor.example: 512 error")) is not None


def test_hosts_are_urls_and_named_dotted_names_not_files_or_classes() -> None:
    text = "ERROR psycopg2.OperationalError from db.eu.example.com reading app/models.py via https://x.vendor.io/a"
    assert hosts(text) == ["x.vendor.io", "db.eu.example.com"]


# --- in an investigation -----------------------------------------------------------------------


def test_an_expired_certificate_outranks_a_closer_change_nothing_names() -> None:
    inv = investigate_with(
        [CONFIG_TWEAK], [line("ERROR POST https://pay.partner.example/charge: x509: certificate has expired")]
    )
    top = inv.hypotheses[0]
    assert (
        top.title.startswith("No change caused this: an expired certificate") and top.evidence[0] == "logs:0"
    )
    assert "pay.partner.example" in top.detail and "none of the 1 change(s) gathered" in top.detail
    tweak = next(h for h in inv.hypotheses if "ccccccc" in h.title)
    assert tweak.confidence < 0.5 and "names a cause no change made" in tweak.detail
    assert fix_kind(inv) == "none" and "ccccccc" not in inv.summary


def test_a_change_that_edits_the_failing_host_stays_the_suspect() -> None:
    """The outage is ours when a change in the window points the service at that host."""
    moved = change(
        "m",
        6,
        "orders: new geo endpoint",
        ["services/orders/geo.yaml"],
        "-url: old\n+url: https://geo.vendor.example",
    )
    inv = investigate_with(
        [moved], [line("ERROR GET https://geo.vendor.example/v2: 503 Service Unavailable")]
    )
    assert "mmmmmmm" in inv.hypotheses[0].title
    assert not any(h.title.startswith("No change caused this") for h in inv.hypotheses)
    assert fix_kind(inv) == "manual"


def test_a_change_named_only_by_an_alert_label_does_not_outrank_a_provider_outage() -> None:
    """The label says where the symptom shows (the sms channel); the error says why (the vendor fails)."""
    sms = change("5", 30, "orders: sms wording", ["services/orders/sms.py"], "-MSG = 'a'\n+MSG = 'b'")
    inv = investigate_with(
        [sms],
        [line("ERROR POST https://api.textco.example/send: 503 Service Unavailable")],
        labels={"channel": "sms"},
    )
    assert inv.hypotheses[0].title.startswith("No change caused this: an outage at api.textco.example")
    label_tied = next(h for h in inv.hypotheses if "5555555" in h.title)
    assert "alert:OrdersFailing" in label_tied.detail and label_tied.confidence < 0.5
    assert fix_kind(inv) == "none"


def test_two_lines_blaming_one_host_are_one_outage_not_a_close_call() -> None:
    inv = investigate_with(
        [CONFIG_TWEAK],
        [
            line("ERROR GET https://geo.vendor.example/a: 503 Service Unavailable", count=300),
            line("ERROR GET https://geo.vendor.example/b: returned 503", count=60),
        ],
    )
    outages = [h for h in inv.hypotheses if h.title.startswith("No change caused this")]
    assert len(outages) == 1 and outages[0].evidence[:2] == ["logs:0", "logs:1"]
    assert "A close call" not in inv.summary


def test_an_id_column_at_its_limit_is_not_blamed_on_a_deploy() -> None:
    inv = investigate_with(
        [CONFIG_TWEAK], [line('ERROR integer out of range: INSERT INTO "order_lines" (line_no)')]
    )
    assert inv.hypotheses[0].title.startswith("No change caused this: a limit reached by growth")
    assert fix_kind(inv) == "none"
    bug = investigate_with(
        [CONFIG_TWEAK], [line("panic: runtime error: index out of range [3] with length 3")]
    )
    assert "ccccccc" in bug.hypotheses[0].title and fix_kind(bug) == "manual"


def test_a_few_certificate_errors_beside_many_others_are_not_the_cause() -> None:
    """A cause must account for a fair share of the new errors (CAUSE_SHARE of the loudest)."""
    logs = [
        line("ERROR KeyError: 'page_size' in orders/list.py", count=5000),
        line("ERROR x509: certificate has expired (CN=old-batch.partner.example)", count=12),
    ]
    inv = investigate_with([CONFIG_TWEAK], logs)
    assert not any(h.title.startswith("No change caused this") for h in inv.hypotheses)
    assert "ccccccc" in inv.hypotheses[0].title


def test_demand_that_rose_before_any_change_is_the_cause() -> None:
    later = change(
        "1", 5, "orders: log order ids", ["services/orders/log.yaml"], "-level: warn\n+level: info"
    )
    metrics = [
        series("active users", 1000, 2600, -25),
        series("orders p99 seconds", 0.2, 4.0, -6),
    ]
    inv = investigate_with([later], [line("ERROR query exceeded 2s on carts")], metrics)
    top = inv.hypotheses[0]
    assert top.title.startswith("No change caused this: demand: active users rose first")
    assert top.evidence[0] == "metrics:active users" and fix_kind(inv) == "none"


def test_demand_after_a_change_is_not_called_the_cause() -> None:
    """A change shortly before the rise may be what brought the demand (a retry loop, a launch)."""
    before = change(
        "2", 35, "orders: retry checkout calls 5x", ["services/orders/retry.py"], "-n = 1\n+n = 5"
    )
    metrics = [series("active users", 1000, 2600, -25), series("orders p99 seconds", 0.2, 4.0, -6)]
    inv = investigate_with([before], metrics=metrics)
    assert "2222222" in inv.hypotheses[0].title
    assert not any(h.title.startswith("No change caused this") for h in inv.hypotheses)


def test_a_failure_metric_rising_first_is_a_symptom_not_demand() -> None:
    metrics = [series("failed requests per second", 1, 900, -25), series("orders p99 seconds", 0.2, 4.0, -6)]
    inv = investigate_with([], metrics=metrics)
    assert not any(h.title.startswith("No change caused this") for h in inv.hypotheses)
