"""Matching and rendering: precedence, params, and untrusted label values that must never get through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.incident import WebhookAlert
from models.plan import CommandAction, GitEditAction, GitRevertAction, HttpAction
from playbooks.condition import condition_holds
from playbooks.loader import load_playbooks
from playbooks.matcher import PlaybookSet, provably_disjoint
from playbooks.schema import (
    format_duration,
    normalize_condition,
    parse_duration,
    parse_matcher,
)

STRICT = """\
apiVersion: selfheal/v1
kind: Playbook
name: raise-limit
description: Raise a service's memory limit
match:
  alertname: OOM
  matchers: ['service=~".+"']
target: "{{ params.service }}"
repo: config
params:
  service: {from: label, key: service, pattern: '^[a-z0-9-]{1,63}$'}
fix:
  - git_edit: {file: 'services/{{ params.service }}/deploy.yaml', key: spec.memory, scale: 1.5}
  - command: {argv: [make, -C, 'services/{{ params.service }}', reload]}
test:
  - command: {argv: [make, test]}
"""

#: Deliberately loose patterns: the rendered-value checks alone must stop what gets through.
LOOSE = """\
apiVersion: selfheal/v1
kind: Playbook
name: loose
description: A careless playbook
match:
  alertname: Loose
target: "{{ params.service }}"
repo: config
params:
  service: {from: label, key: service, pattern: '.*'}
diagnose:
  - name: still failing
    query: 'up{service="{{ params.service }}"}'
    condition: '== 0'
fix:
  - git_edit: {file: '{{ params.service }}/deploy.yaml', key: 'flags.{{ params.service }}', value: false}
  - command: {argv: [restart, '{{ params.service }}'], cwd: 'services/{{ params.service }}'}
  - http: {url: 'https://api.example/restart/{{ params.service }}', json: {who: '{{ params.service }}'}}
"""


def alert(alertname: str = "OOM", fingerprint: str = "abc123", **labels: str) -> WebhookAlert:
    annotations = {k[len("ann_") :]: v for k, v in labels.items() if k.startswith("ann_")}
    labels = {k: v for k, v in labels.items() if not k.startswith("ann_")}
    return WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": alertname, **labels},
            "annotations": annotations,
            "startsAt": "2026-01-05T10:00:00Z",
            "fingerprint": fingerprint,
        }
    )


def load(tmp_path: Path, *texts: str) -> PlaybookSet:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (tmp_path / f"p{i}.yaml").write_text(text, encoding="utf-8")
    return load_playbooks([tmp_path], include_library=False)


def variant(name: str, matchers: str, priority: int = 0, alertname: str = "OOM") -> str:
    return (
        STRICT.replace("name: raise-limit", f"name: {name}")
        .replace("matchers: ['service=~\".+\"']", f"matchers: {matchers}\n  priority: {priority}")
        .replace("alertname: OOM", f"alertname: {alertname}")
    )


def test_applies_and_renders(tmp_path: Path) -> None:
    result = load(tmp_path, STRICT).match(alert(service="cart"), incident_id="inc-1")
    assert (
        result.playbook == "raise-limit" and result.mode == "approve" and result.params == {"service": "cart"}
    )
    assert result.reasons == []
    plan = result.plan
    assert plan is not None and plan.target == "cart" and plan.incident_id == "inc-1"
    edit, command = plan.fix[0].action, plan.fix[1].action
    assert isinstance(edit, GitEditAction) and edit.file == "services/cart/deploy.yaml" and edit.scale == 1.5
    assert isinstance(command, CommandAction) and command.argv == ["make", "-C", "services/cart", "reload"]
    assert not command.sandbox
    test = plan.test[0].action
    assert isinstance(test, CommandAction) and test.sandbox
    assert plan.policy.mode == "approve" and plan.policy.max_runs == 3
    assert plan.policy.window_seconds == 3600 and plan.policy.cooldown_seconds == 600
    assert plan.policy.require_firing


@pytest.mark.parametrize("value", ["x; rm -rf /", "$(id)", "../../etc", "{{ 7*7 }}", "`id`", "a b", "a/b"])
def test_hostile_label_values_do_not_match_a_sane_pattern(tmp_path: Path, value: str) -> None:
    result = load(tmp_path, STRICT).match(alert(service=value))
    assert result.playbook is None and result.plan is None
    assert result.reasons == [
        f"raise-limit: param service: value {value!r} does not match ^[a-z0-9-]{{1,63}}$"
    ]


@pytest.mark.parametrize("value", ["cart\nrm -rf /", "cart\x00", "cart\r", "\x1b[31mred"])
def test_control_characters_are_refused_whatever_the_pattern(tmp_path: Path, value: str) -> None:
    result = load(tmp_path / "s", STRICT).match(alert(service=value))
    assert result.playbook is None and "\n" not in "".join(result.reasons)
    result = load(tmp_path / "l", LOOSE).match(alert("Loose", service=value))
    assert result.playbook is None
    assert result.reasons == [
        f"loose: param service: value {value!r} contains a control character (NUL/newline)"
    ]


@pytest.fixture
def loose(tmp_path: Path) -> PlaybookSet:
    return load(tmp_path, LOOSE)


def test_loose_pattern_still_cannot_leave_the_worktree(loose: PlaybookSet) -> None:
    result = loose.match(alert("Loose", service="../../etc"))
    assert result.playbook is None
    assert "loose: fix.0.git_edit.file: path '../../etc/deploy.yaml' has a '..' component" in result.reasons
    assert "loose: fix.1.command.cwd: path 'services/../../etc' has a '..' component" in result.reasons
    assert (
        "loose: fix.2.http.url: url 'https://api.example/restart/../../etc' has a '.' or '..' path segment"
        in (result.reasons)
    )
    result = loose.match(alert("Loose", service="/etc"))
    assert "loose: fix.0.git_edit.file: path '/etc/deploy.yaml' must be relative to the repository" in (
        result.reasons
    )
    result = loose.match(alert("Loose", service=".git"))
    assert "loose: fix.0.git_edit.file: path '.git/deploy.yaml' points into .git" in result.reasons


def test_loose_pattern_cannot_smuggle_an_option_or_break_a_query(loose: PlaybookSet) -> None:
    result = loose.match(alert("Loose", service="--config=evil"))
    assert "loose: fix.1.command.argv.1: value '--config=evil' would be read as an option" in result.reasons
    result = loose.match(alert("Loose", service='x"} or vector(1) #'))
    assert result.playbook is None
    assert any(r.startswith("loose: diagnose.0.query: value ") and "PromQL" in r for r in result.reasons)
    result = loose.match(alert("Loose", service="a..b"))
    assert "loose: fix.0.git_edit.key: key 'flags.a..b' has an empty segment" in result.reasons


def test_template_syntax_in_a_value_comes_out_literally(tmp_path: Path) -> None:
    # Without the PromQL query, URL and key, which refuse braces or spaces outright.
    text = LOOSE.replace("restart/{{ params.service }}'", "restart'").replace(
        "flags.{{ params.service }}", "on"
    )
    text = text[: text.index("diagnose:")] + text[text.index("fix:") :]
    loose = load(tmp_path, text)
    result = loose.match(alert("Loose", service="{{ 7*7 }}"))
    assert result.playbook == "loose", result.reasons
    plan = result.plan
    assert plan is not None
    edit, command, http = (s.action for s in plan.fix)
    assert isinstance(edit, GitEditAction) and edit.file == "{{ 7*7 }}/deploy.yaml"
    assert isinstance(command, CommandAction) and command.argv == ["restart", "{{ 7*7 }}"]
    assert isinstance(http, HttpAction) and http.json_body == {"who": "{{ 7*7 }}"}
    assert plan.target == "{{ 7*7 }}" and plan.params == {"service": "{{ 7*7 }}"}
    rendered = plan.model_dump_json(exclude={"playbook_digest"})
    assert "49" not in rendered
    for payload in ("{{ ''.__class__ }}", "{% for x in range(9) %}x{% endfor %}"):
        result = loose.match(alert("Loose", service=payload))
        assert result.plan is not None and result.plan.target == payload


def test_precedence_priority_then_specificity(tmp_path: Path) -> None:
    playbooks = load(
        tmp_path,
        variant("generic", "['service=~\".+\"']"),
        variant("cart-specific", "['service=\"cart\"', 'zone=~\".+\"']"),
        variant("urgent", "['severity=\"critical\"']", priority=10),
    )
    result = playbooks.match(alert(service="cart", zone="eu"))
    assert result.playbook == "cart-specific"
    assert result.reasons == [
        'urgent: matcher severity="critical" does not match (severity absent)',
        "generic: also matches, but cart-specific takes precedence;"
        " alternative 1, tried if diagnose rules out cart-specific",
    ]
    assert [c.playbook for c in result.alternatives] == ["generic"]
    assert playbooks.match(alert(service="cart", zone="eu", severity="critical")).playbook == "urgent"
    result = playbooks.match(alert(service="web"))
    assert result.playbook == "generic"
    assert "cart-specific: matcher service=\"cart\" does not match (service='web')" in result.reasons


def test_a_candidate_whose_params_fail_falls_through(tmp_path: Path) -> None:
    strict_high = variant("strict-high", "['service=~\".+\"']", priority=10)
    loose_low = variant("loose-low", "['service=~\".+\"']").replace(
        "'^[a-z0-9-]{1,63}$'", "'^[a-z0-9_-]{1,63}$'"
    )
    result = load(tmp_path, strict_high, loose_low).match(alert(service="cart_v2"))
    assert result.playbook == "loose-low"
    assert result.reasons == ["strict-high: param service: value 'cart_v2' does not match ^[a-z0-9-]{1,63}$"]


def test_no_playbook_for_the_alertname(tmp_path: Path) -> None:
    result = load(tmp_path, STRICT).match(alert("Other", service="cart"))
    assert result.playbook is None and result.reasons == ["no playbook handles alertname 'Other'"]


def test_tie_at_match_time_picks_by_name_and_says_so(tmp_path: Path) -> None:
    result = load(tmp_path, variant("b-second", "[]"), variant("a-first", "[]")).match(alert(service="cart"))
    assert result.playbook == "a-first"
    assert result.reasons[0].startswith("a-first: ties with b-second")


PARAMS = """\
apiVersion: selfheal/v1
kind: Playbook
name: revert
description: Revert recent config
match:
  alertname: HighErrorRatio
target: "{{ params.service }}"
repo: config
params:
  service: {from: label, key: service, pattern: '^[a-z0-9-]{1,63}$'}
  window: {from: annotation, key: window, pattern: '^[0-9]+[smh]$', default: 2h}
  host: {from: label, key: instance, pattern: '^([a-z0-9.-]+):[0-9]+$', group: 1, default: 'localhost:80'}
fix:
  - git_revert: {since: '{{ params.window }}', paths: ['services/{{ params.service }}/**']}
  - http:
      url: >-
        {{ settings.public_url }}/hooks/{{ params.host }}?at={{ alert.startsAt }}&fp={{ alert.fingerprint }}
"""


def test_param_defaults_annotations_and_groups(tmp_path: Path) -> None:
    playbooks = load(tmp_path, PARAMS)
    ctx = {"public_url": "https://selfheal.example"}
    result = playbooks.match(alert("HighErrorRatio", service="cart"), settings_ctx=ctx)
    assert result.params == {"service": "cart", "window": "2h", "host": "localhost"}
    assert result.plan is not None
    revert, http = result.plan.fix[0].action, result.plan.fix[1].action
    assert isinstance(revert, GitRevertAction) and revert.since_seconds == 7200
    assert revert.paths == ["services/cart/**"]
    assert isinstance(http, HttpAction)
    assert http.url == "https://selfheal.example/hooks/localhost?at=2026-01-05T10:00:00Z&fp=abc123"

    result = playbooks.match(
        alert("HighErrorRatio", service="cart", instance="api-1.example:9100", ann_window="45m"),
        settings_ctx=ctx,
    )
    assert result.params == {"service": "cart", "window": "45m", "host": "api-1.example"}
    assert result.plan is not None and isinstance(result.plan.fix[0].action, GitRevertAction)
    assert result.plan.fix[0].action.since_seconds == 2700

    result = playbooks.match(alert("HighErrorRatio", service="cart", ann_window="2 hours"), settings_ctx=ctx)
    assert result.reasons == ["revert: param window: value '2 hours' does not match ^[0-9]+[smh]$"]
    result = playbooks.match(alert("HighErrorRatio", instance="x:1"), settings_ctx=ctx)
    assert result.reasons == ["revert: param service: label 'service' is missing"]
    result = playbooks.match(alert("HighErrorRatio", service=""), settings_ctx=ctx)
    assert result.reasons == ["revert: param service: label 'service' is missing"]


def test_settings_and_fingerprint_at_render_time(tmp_path: Path) -> None:
    playbooks = load(tmp_path, PARAMS)
    result = playbooks.match(alert("HighErrorRatio", service="cart"))
    assert result.playbook is None
    assert result.reasons[0].startswith("revert: fix.1.http.url: cannot render:")
    assert "public_url" in result.reasons[0]
    ctx = {"public_url": "https://selfheal.example"}
    result = playbooks.match(alert("HighErrorRatio", fingerprint="../x", service="cart"), settings_ctx=ctx)
    assert result.reasons == ["revert: alert fingerprint '../x' is not alphanumeric"]


def test_default_policy_and_rollback_steps(tmp_path: Path) -> None:
    text = STRICT + (
        "policy: {mode: suggest, window: 2h}\n"
        "verify: {query: 'up', condition: '>=1'}\n"
        "rollback:\n  - command: {argv: [make, undo], timeout: 90s}\n"
    )
    plan = load(tmp_path, text).match(alert(service="cart")).plan
    assert plan is not None
    assert plan.policy.mode == "suggest" and plan.policy.window_seconds == 7200 and plan.policy.max_runs == 3
    assert plan.verify is not None and plan.verify.condition == ">= 1" and plan.verify.hold_for_seconds == 60
    assert not isinstance(plan.rollback, str)
    assert plan.rollback[0].phase == "rollback" and plan.rollback[0].description == "run make undo"


def test_matcher_semantics() -> None:
    labels: dict[str, Any] = {"service": "checkout", "zone": ""}
    assert parse_matcher('service=~"check"').matches(labels) is False  # fully anchored
    assert parse_matcher('service=~"check.*"').matches(labels) is True
    assert parse_matcher('severity!="info"').matches(labels) is True  # absent = ""
    assert parse_matcher('zone=""').matches(labels) is True
    assert parse_matcher("service!~checkout").matches(labels) is False
    assert str(parse_matcher(r'a="x\"y"')) == r'a="x\"y"'
    with pytest.raises(ValueError, match="invalid matcher"):
        parse_matcher("service")


def test_disjointness(tmp_path: Path) -> None:
    a, b, c = load(
        tmp_path,
        variant("pa", "['job=\"api\"']"),
        variant("pb", "['job=~\"web|db\"']"),
        variant("pc", "['zone=\"eu\"']"),
    ).playbooks
    assert provably_disjoint(a, b) and not provably_disjoint(a, c) and not provably_disjoint(b, c)


def test_durations_and_conditions() -> None:
    assert [parse_duration(d) for d in ("30s", "5m", "2h", "1d", "1h30m", "500ms")] == [
        30,
        300,
        7200,
        86400,
        5400,
        0.5,
    ]
    assert [format_duration(s) for s in (30, 300, 7200, 86400, 5400)] == ["30s", "5m", "2h", "1d", "90m"]
    for bad in ("", "5", "m5", "5 m", "-5m", "1.5h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert normalize_condition(">0.05") == "> 0.05"
    assert condition_holds("> 0.05", 0.1) and not condition_holds("<= 1e-3", 0.01)
    assert condition_holds("!= 0", 1) and condition_holds("== 1", 1.0)
