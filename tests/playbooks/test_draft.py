"""Drafting a playbook from an incident an approved fix healed: labels generalized into matchers and
params, hostile values kept as data, and a draft that is either refused or lints clean and matches
the alert it came from (checked by the real loader)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.incident import (
    Decision,
    DecisionKind,
    IncidentView,
    Outcome,
    Proposal,
    RemediationSummary,
    Stage,
    TicketRef,
    TrackedAlert,
    WebhookAlert,
)
from models.investigation import Investigation, ProposedFix, RevertRef
from playbooks.draft import (
    CommitFacts,
    Draft,
    DraftRefused,
    DraftSource,
    build_draft,
    generalize_labels,
    lint_draft,
    revert_window,
    source_from_view,
    templated_path,
    value_pattern,
)
from playbooks.loader import load_file
from playbooks.matcher import PlaybookSet
from playbooks.proposal import ServiceDefaults

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"
DEFAULTS = ServiceDefaults.model_validate(
    {
        "repo": "config",
        "test": [{"command": {"argv": ["make", "check", "SERVICE={{ params.service }}"], "timeout": "90s"}}],
        "deploy": [
            {"git_push": {"branch": "main"}},
            {
                "http": {
                    "url": "{{ settings.shop_url }}/-/reload",
                    "expect_status": [200],
                    "timeout": "1500ms",
                }
            },
        ],
        "verify": {"hold_for": "3s", "timeout": "1m"},
    }
)
CTX = {"shop_url": "http://shop.example:8080", "public_url": ""}
LABELS = {
    "alertname": "HighLatency",
    "service": "shop",
    "severity": "warning",
    "route": "/api/products",
    "namespace": "prod",
    "pod": "shop-7d9f8b6c5d-x2kq9",
    "instance": "10.1.2.3:8080",
    "prometheus_replica": "prometheus-k8s-0",
}


def alert(labels: dict[str, str], fingerprint: str = "a1b2c3d4e5f60708") -> TrackedAlert:
    return TrackedAlert(
        fingerprint=fingerprint, status="resolved", labels=labels, annotations={}, startsAt=NOW
    )


def firing(labels: dict[str, str]) -> WebhookAlert:
    return WebhookAlert(status="firing", labels=labels, startsAt=NOW, fingerprint="0f0e0d0c0b0a0908")


def source(labels: dict[str, str] = LABELS, **kw: Any) -> DraftSource:
    base: dict[str, Any] = {
        "incident_id": "abc123-1",
        "ticket_key": "LOCAL-4",
        "alert": alert(labels),
        "service": labels.get("service", "shop"),
        "service_label": "service",
        "kind": "revert",
        "repo": "config",
        "sha": SHA,
        "approved_by": "alice",
    }
    return DraftSource(**{**base, **kw})


def touched(*paths: str, ago: float = 5) -> Any:
    return lambda _repo, _sha: CommitFacts(paths=paths, committed_at=NOW - timedelta(seconds=ago))


def drafted(src: DraftSource | None = None, paths: tuple[str, ...] = ("services/shop/config.yaml",)) -> Draft:
    return build_draft(src or source(), DEFAULTS, commit=touched(*paths))


def loaded(draft: Draft, tmp_path: Any) -> Any:
    path = tmp_path / draft.filename
    path.write_text(draft.text)
    playbook, errors = load_file(path)
    assert playbook is not None, errors
    return playbook


def test_a_revert_becomes_a_window_revert_over_the_files_it_touched(tmp_path: Any) -> None:
    draft = drafted(paths=("services/shop/config.yaml", "services/shop/flags/shop.yaml"))
    assert draft.name == "shop-high-latency-revert" and draft.filename == "shop-high-latency-revert.yaml"
    assert lint_draft(draft, source().alert, known_repos=["config"], settings_ctx=CTX) == []
    spec = loaded(draft, tmp_path).spec
    assert spec.match.alertname == "HighLatency"
    assert sorted(str(m) for m in spec.match.matchers) == [
        'namespace="prod"',
        'route="/api/products"',
        'service="shop"',
        'severity="warning"',
    ]
    assert spec.params["pod"].pattern == r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    assert spec.params["instance"].pattern.startswith("^[0-9]{1,3}")
    assert "prometheus_replica" not in {p.key for p in spec.params.values()}
    revert = spec.fix[0].git_revert
    assert revert is not None and revert.commit is None and revert.max_commits == 1
    assert revert.since == "10m"
    assert revert.paths == [
        "services/{{ params.service }}/config.yaml",
        "services/{{ params.service }}/flags/{{ params.service }}.yaml",
    ]
    policy = spec.policy
    assert (policy.mode, policy.max_runs, policy.cooldown, policy.window) == ("approve", 2, 3600.0, 86400.0)
    # The service's own test/deploy/verify, durations written back as the schema reads them.
    assert spec.test[0].command is not None and spec.test[0].command.timeout == 90.0
    assert spec.deploy[1].http is not None and spec.deploy[1].http.timeout == 1.5
    assert spec.verify is not None and spec.verify.alert_resolved and spec.verify.hold_for == 3.0
    assert "healed by a revert approved by alice" in draft.text.splitlines()[0]


def test_the_draft_matches_the_next_alert_of_the_same_shape_and_not_another(tmp_path: Any) -> None:
    pbs = PlaybookSet([loaded(drafted(), tmp_path)])
    other_pod = {**LABELS, "pod": "shop-5c6b7a8d9e-qwert", "instance": "10.1.2.9:8080"}
    result = pbs.match(firing(other_pod), settings_ctx=CTX)
    assert result.playbook == "shop-high-latency-revert", result.reasons
    assert result.params["pod"] == "shop-5c6b7a8d9e-qwert"
    assert result.plan is not None and result.plan.fix[0].action.paths == ["services/shop/config.yaml"]  # type: ignore[union-attr]
    for change in ({"route": "/api/cart"}, {"severity": "critical"}, {"pod": "Not_A_Pod"}):
        assert pbs.match(firing({**LABELS, **change}), settings_ctx=CTX).playbook is None


def test_a_patch_is_kept_but_only_suggested(tmp_path: Any) -> None:
    patch = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    draft = drafted(source(kind="patch", sha="", patch=patch))
    assert draft.name == "shop-high-latency-patch"
    assert "only" in draft.text and "suggests it (mode: suggest)" in draft.text
    assert lint_draft(draft, source().alert, known_repos=["config"], settings_ctx=CTX) == []
    spec = loaded(draft, tmp_path).spec
    assert spec.policy.mode == "suggest" and spec.fix[0].git_apply is not None
    assert spec.fix[0].git_apply.patch == patch


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("shop-7d9f8b6c5d-x2kq9", r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        ("node-1.eu-west.compute.internal", r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"),
        ("10.0.0.1:9100", r"^[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]{1,5})?$"),
        ("0f1e2d3c4b5a6978", r"^[0-9a-f]{8,64}$"),
        ("Web_01", r"^[a-zA-Z0-9_]{1,63}$"),
        ("a b", None),
        ('x"}', None),
        ("{{ settings.x }}", None),
        ("", None),
    ],
)
def test_value_patterns_describe_the_value_and_never_anything(value: str, pattern: str | None) -> None:
    assert value_pattern(value) == pattern


def test_hostile_label_values_stay_data(tmp_path: Any) -> None:
    """A quote, a template, a newline or a shell string is matched exactly (escaped) or left out;
    it never becomes a template, a pattern or a comment line."""
    hostile = {
        **LABELS,
        "route": '/x"} or vector(1) #{{ settings.shop_url }}',
        "pod": "$(reboot)",
        "job": "a\nname: pwned",
    }
    draft = drafted(source(hostile))
    assert lint_draft(draft, source(hostile).alert, known_repos=["config"], settings_ctx=CTX) == []
    spec = loaded(draft, tmp_path).spec
    assert spec.name == "shop-high-latency-revert"  # the newline did not inject a key
    route = next(m for m in spec.match.matchers if m.name == "route")
    assert route.value == hostile["route"] and route.op == "="
    assert "pod" not in spec.params and "job" not in {m.name for m in spec.match.matchers}
    comments = [line for line in draft.text.splitlines() if line.startswith("#")]
    assert all("reboot" not in c and "pwned" not in c and "{{" not in c for c in comments)
    assert "label pod was left out" in draft.text and "label job was left out" in draft.text
    templated = [s for s in draft.text.splitlines() if "{{" in s and "route" not in s]
    assert all("settings.shop_url }}/-/reload" in s or "params." in s or "alert." in s for s in templated)


def test_paths_a_glob_or_template_would_read_as_syntax_are_refused() -> None:
    for bad in ("services/shop/*.yaml", "services/{{ x }}/a", "a/[b]"):
        with pytest.raises(DraftRefused, match="path"):
            drafted(paths=(bad,))
    with pytest.raises(DraftRefused, match="touched 21 files"):
        drafted(paths=tuple(f"f{i}.yaml" for i in range(21)))


def test_the_revert_window_and_path_templating() -> None:
    assert revert_window(NOW - timedelta(seconds=5), NOW) == "10m"
    assert revert_window(NOW - timedelta(minutes=30), NOW) == "90m"
    assert revert_window(NOW - timedelta(days=3), NOW) == "1d"
    assert templated_path("services/shop/shop.yaml", {"service": "shop"}) == (
        "services/{{ params.service }}/{{ params.service }}.yaml"
    )
    assert templated_path("shopping/x.yaml", {"service": "shop"}) == "shopping/x.yaml"
    assert templated_path("a/db/x", {"service": "db"}) == "a/db/x"  # too short to be sure


def test_a_draft_that_does_not_lint_is_reported() -> None:
    draft = drafted()
    problems = lint_draft(draft, source().alert, known_repos=["other"], settings_ctx=CTX)
    assert problems and problems[0].startswith("shop-high-latency-revert.yaml:") and "repo" in problems[0]


def test_a_taken_name_gets_a_suffix() -> None:
    draft = build_draft(source(), DEFAULTS, commit=touched("a.yaml"), taken={"shop-high-latency-revert"})
    assert draft.name == "shop-high-latency-revert-2"


def view(**kw: Any) -> IncidentView:
    data: dict[str, Any] = {
        "id": "abc123-1",
        "group_id": "abc123",
        "group_key": "{}:{}",
        "receiver": "selfheal",
        "stage": Stage.CLOSED,
        "status": "resolved",
        "outcome": Outcome.HEALED_AFTER_APPROVAL,
        "service": "shop",
        "alertname": "HighLatency",
        "opened_at": NOW,
        "ticket": TicketRef(key="LOCAL-4", url="", tracker="local"),
        "alerts": [alert(LABELS)],
        "decision": Decision(decision=DecisionKind.APPROVE, by="alice"),
        "proposal": Proposal(playbook="proposed-revert", mode="approve", target="shop", kind="revert"),
        "investigation": Investigation(
            investigator="builtin",
            summary="s",
            proposed_fix=ProposedFix(kind="manual", revert=RevertRef(repo="config", sha=SHA)),
        ),
        "remediations": [
            RemediationSummary(playbook="proposed-revert", outcome="healed", approved_by="alice")
        ],
    }
    return IncidentView(**{**data, **kw})


def test_only_an_incident_healed_by_an_approved_proposal_is_drafted() -> None:
    src = source_from_view(view(), service_label="service")
    assert (src.kind, src.repo, src.sha, src.approved_by, src.ticket_key) == (
        "revert",
        "config",
        SHA,
        "alice",
        "LOCAL-4",
    )
    for other in (
        view(outcome=Outcome.REJECTED),
        view(
            outcome=Outcome.HEALED, remediations=[RemediationSummary(playbook="pool-raise", outcome="healed")]
        ),
        view(remediations=[RemediationSummary(playbook="x-playbook", outcome="healed", approved_by="alice")]),
    ):
        with pytest.raises(DraftRefused, match="not healed by an approved proposed fix"):
            source_from_view(other, service_label="service")


EXAMPLES = int(os.environ.get("SELFHEAL_FUZZ_EXAMPLES", "40"))
LABEL_KEYS = st.sampled_from(["pod", "instance", "route", "job", "container", "uid", "team", "x_id", "Le"])
VALUES = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["$(id)", "{{ settings }}", "a\nb: c", '"', "\\", "10.0.0.1:80", "-rf", "x" * 300]),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(extra=st.dictionaries(LABEL_KEYS, VALUES, max_size=5))
def test_every_draft_is_refused_or_lints_clean_and_matches_its_alert(extra: dict[str, str]) -> None:
    """Whatever labels the alert carried, the draft the code path would propose passes the real
    loader and matches the alert it was drafted from."""
    labels = {**LABELS, **extra}
    src = source(labels)
    try:
        draft = drafted(src)
    except DraftRefused:
        return
    assert lint_draft(draft, src.alert, known_repos=["config"], settings_ctx=CTX) == []
    data = yaml.safe_load(draft.text)
    assert data["policy"]["mode"] == "approve"
    assert all(".*" not in p["pattern"] for p in data["params"].values())


def test_generalize_keeps_the_service_as_param_and_matcher() -> None:
    found = generalize_labels({"alertname": "A", "app": "web"}, service_label="app", service="web")
    assert found.params == {
        "service": {"from": "label", "key": "app", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}
    }
    assert found.matchers == ['app="web"']
