"""Several playbooks for one alert, and params read from a PromQL query (`from: query`).

The matcher keeps every matching playbook in precedence order (diagnose chooses at run time);
a `from: query` param is resolved through a query function standing in for Prometheus, and the
values it places in that query, or reads back from it, are untrusted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.incident import WebhookAlert
from models.plan import CommandAction
from playbooks.loader import lint_paths, load_playbooks
from playbooks.matcher import PlaybookSet
from playbooks.render import RenderError, render_param_query
from selfheal.playbooks_cli import playbooks_app

#: Two sub-patterns of one stock alert: an OOM (checked first) and a bad rollout.
OOM = """\
apiVersion: selfheal/v1
kind: Playbook
name: crashloop-oom
description: The container was OOM-killed; raise its limit
match:
  alertname: KubePodCrashLooping
  priority: 10
target: "{{ params.namespace }}/{{ params.pod }}"
params:
  namespace: {from: label, key: namespace, pattern: '^[a-z0-9-]{1,63}$'}
  pod: {from: label, key: pod, pattern: '^[a-z0-9-]{1,253}$'}
diagnose:
  - name: last termination was an OOM kill
    query: 'kube_pod_container_status_last_terminated_reason{namespace="{{ params.namespace }}",
      pod="{{ params.pod }}", reason="OOMKilled"}'
    condition: '> 0'
fix:
  - command: {argv: [raise-limit, "{{ params.namespace }}", "{{ params.pod }}"]}
"""

ROLLOUT = """\
apiVersion: selfheal/v1
kind: Playbook
name: crashloop-rollout
description: Crash loop after a rollout; undo it
match:
  alertname: KubePodCrashLooping
policy: {mode: auto}
target: "{{ params.namespace }}/{{ params.deployment }}"
params:
  namespace: {from: label, key: namespace, pattern: '^.+$'}
  pod: {from: label, key: pod, pattern: '^.+$'}
  deployment:
    from: query
    query: 'max by (owner_name) (kube_replicaset_owner{namespace="{{ params.namespace }}",
      replicaset=~"{{ params.pod }}.*"})'
    key: owner_name
    pattern: '^[a-z0-9-]{1,63}$'
fix:
  - command: {argv: [undo-rollout, "{{ params.namespace }}", "{{ params.deployment }}"]}
"""


def alert(**labels: str) -> WebhookAlert:
    return WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", **labels},
            "annotations": {},
            "startsAt": "2026-01-05T10:00:00Z",
            "fingerprint": "f00d",
        }
    )


def load(tmp_path: Path, *texts: str) -> PlaybookSet:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (tmp_path / f"p{i}.yaml").write_text(text, encoding="utf-8")
    return load_playbooks([tmp_path], include_library=False)


class FakePrometheus:
    """Answers each query with the label sets given; records the PromQL it was sent."""

    def __init__(self, *samples: Mapping[str, str]) -> None:
        self.samples = list(samples)
        self.queries: list[str] = []

    def __call__(self, promql: str) -> Sequence[Mapping[str, str]]:
        self.queries.append(promql)
        return self.samples


def test_every_matching_playbook_is_a_candidate_in_precedence_order(tmp_path: Path) -> None:
    playbooks = load(tmp_path, ROLLOUT, OOM)
    result = playbooks.match(alert(namespace="shop", pod="web-7d9f-x2"))
    assert (result.playbook, result.mode) == ("crashloop-oom", "approve")
    assert result.plan is not None and result.plan.target == "shop/web-7d9f-x2"
    assert result.deferred == []
    assert [(c.playbook, c.mode, c.deferred) for c in result.alternatives] == [
        ("crashloop-rollout", "auto", ["deployment"])
    ]
    rollout = result.alternatives[0]
    assert rollout.plan is None and rollout.params == {"namespace": "shop", "pod": "web-7d9f-x2"}
    assert result.needs_choice()
    assert [c.playbook for c in result.candidates()] == ["crashloop-oom", "crashloop-rollout"]
    assert result.candidates()[0].digest == result.plan.playbook_digest
    assert result.reasons == [
        "crashloop-rollout: also matches, but crashloop-oom takes precedence;"
        " alternative 1, tried if diagnose rules out crashloop-oom"
    ]


def test_a_candidate_refused_by_its_params_is_no_alternative(tmp_path: Path) -> None:
    result = load(tmp_path, ROLLOUT, OOM).match(alert(namespace="shop", pod="Web_1"))
    assert result.playbook == "crashloop-rollout" and result.alternatives == []
    assert result.plan is None and result.deferred == ["deployment"] and result.needs_choice()
    assert "crashloop-oom: param pod: value 'Web_1' does not match ^[a-z0-9-]{1,253}$" in result.reasons


def test_a_single_rendered_match_needs_no_choice(tmp_path: Path) -> None:
    result = load(tmp_path, OOM).match(alert(namespace="shop", pod="web-1"))
    assert result.plan is not None and not result.needs_choice()


def test_query_param_resolves_from_the_first_sample(tmp_path: Path) -> None:
    playbooks = load(tmp_path, ROLLOUT)
    firing = alert(namespace="shop", pod="web-7d9f-x2")
    candidate = playbooks.match(firing).candidates()[0]
    prom = FakePrometheus({"owner_name": "web"}, {"owner_name": "other"})
    plan, reasons = playbooks.resolve(candidate, firing, prom, incident_id="inc-1")
    assert reasons == [] and plan is not None
    assert prom.queries == [
        'max by (owner_name) (kube_replicaset_owner{namespace="shop", replicaset=~"web-7d9f-x2.*"})'
    ]
    assert plan.params == {"namespace": "shop", "pod": "web-7d9f-x2", "deployment": "web"}
    assert plan.target == "shop/web" and plan.incident_id == "inc-1"
    action = plan.fix[0].action
    assert isinstance(action, CommandAction) and action.argv == ["undo-rollout", "shop", "web"]


@pytest.mark.parametrize(
    ("samples", "reason"),
    [
        ((), "returned no result"),
        (({"replicaset": "web-7d9f"},), "has no label 'owner_name'"),
        (({"owner_name": 'web"} or vector(1) #'},), "does not match ^[a-z0-9-]{1,63}$"),
        (({"owner_name": "web\nrm -rf /"},), "contains a control character"),
        (({"owner_name": "{{ 7*7 }}"},), "does not match"),
        (({"owner_name": "../../etc"},), "does not match"),
        (({"owner_name": "a" * 2000},), "longer than 1024"),
    ],
)
def test_hostile_or_missing_query_results_rule_the_candidate_out(
    tmp_path: Path, samples: tuple[dict[str, str], ...], reason: str
) -> None:
    playbooks = load(tmp_path, ROLLOUT)
    firing = alert(namespace="shop", pod="web-1")
    plan, reasons = playbooks.resolve(
        playbooks.match(firing).candidates()[0], firing, FakePrometheus(*samples)
    )
    assert plan is None
    assert len(reasons) == 1 and reasons[0].startswith("param deployment: ")
    assert reason in reasons[0]
    assert "\n" not in reasons[0], "the untrusted value is shown escaped"


@pytest.mark.parametrize(
    ("namespace", "pod", "expected"),
    [
        ('a"b', "web", r'namespace="a\"b", replicaset=~"web.*"'),
        ("a\\", '"} or vector(1) or {x="', r'namespace="a\\", replicaset=~"\"} or vector(1) or {x=\".*"'),
        ("{{ 7*7 }}", "{% raw %}", r'namespace="{{ 7*7 }}", replicaset=~"{% raw %}.*"'),
    ],
)
def test_label_values_stay_inside_the_query_strings(
    tmp_path: Path, namespace: str, pod: str, expected: str
) -> None:
    """ROLLOUT's label params accept anything: escaping alone keeps each value one string's content."""
    playbooks = load(tmp_path, ROLLOUT)
    firing = alert(namespace=namespace, pod=pod)
    prom = FakePrometheus({"owner_name": "web"})
    plan, reasons = playbooks.resolve(playbooks.match(firing).candidates()[0], firing, prom)
    assert reasons == [] and plan is not None
    assert prom.queries == [f"max by (owner_name) (kube_replicaset_owner{{{expected}}})"]


def test_values_are_escaped_for_the_quote_around_them(tmp_path: Path) -> None:
    text = ROLLOUT.replace(
        'kube_replicaset_owner{namespace="{{ params.namespace }}",\n      replicaset=~"{{ params.pod }}.*"}',
        "kube_replicaset_owner{namespace=''{{ params.namespace }}'', replicaset=~`{{ params.pod }}.*`}",
    )
    playbook = load(tmp_path, text).by_name["crashloop-rollout"]
    firing = alert()

    def query(namespace: str, pod: str) -> str:
        return render_param_query(
            playbook,
            "deployment",
            params={"namespace": namespace, "pod": pod},
            fingerprint=firing.fingerprint,
            status="firing",
            starts_at=firing.startsAt,
        )

    assert "namespace='it\\'s \"x\" \\\\', replicaset=~`a\\b\".*`" in query('it\'s "x" \\', 'a\\b"')
    with pytest.raises(RenderError, match="raw"):
        query("shop", "web`} or vector(1)")


QUERY_LINES = ROLLOUT[ROLLOUT.index("    query: 'max by") : ROLLOUT.index("    key: owner_name")]
BAD_QUERY_PARAMS = [
    ("key: owner_name", "key: owner-name", "'owner-name' is not a valid label name"),
    (QUERY_LINES, "    query: '  '\n", "query: a non-empty PromQL query is required"),
    (
        "    key: owner_name",
        "    key: owner_name\n    default: web",
        "default: not allowed with `from: query`",
    ),
    (
        "  namespace: {from: label, key: namespace, pattern: '^.+$'}",
        "  namespace: {from: label, key: namespace, pattern: '^.+$', query: 'up'}",
        "query: only with `from: query`",
    ),
    (
        'replicaset=~"{{ params.pod }}.*"',
        'replicaset=~"{{ params.later }}.*"',
        "params.later is not declared before",
    ),
    (
        'replicaset=~"{{ params.pod }}.*"',
        'replicaset=~"{{ params.nope }}.*"',
        "params.nope is not a declared param",
    ),
    ('replicaset=~"{{ params.pod }}.*"', 'replicaset=~"x"} or {{ params.pod }}', "outside a quoted string"),
    ('replicaset=~"{{ params.pod }}.*"', 'replicaset=~"\\{{ params.pod }}"', "must not follow a backslash"),
    ("(kube_replicaset_owner", "(kube_replicaset_owner # {{ params.pod }}\n", "outside a quoted string"),
    ('replicaset=~"{{ params.pod }}.*"', 'replicaset=~"{{ params.pod() }}"', "calls not allowed"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_QUERY_PARAMS)
def test_lint_checks_query_params(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in ROLLOUT
    text = ROLLOUT.replace(old, new)
    if "later" in new:  # declared, but after the param whose query uses it
        text = text.replace("fix:\n", "  later: {from: label, key: later, pattern: '^[a-z]+$'}\nfix:\n", 1)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    errors = lint_paths([path])
    assert any(message in e for e in errors), errors
    assert all(e.startswith(f"{path}:") for e in errors)


def test_the_example_playbooks_lint_clean(tmp_path: Path) -> None:
    for i, text in enumerate((OOM, ROLLOUT)):
        (tmp_path / f"p{i}.yaml").write_text(text)
    assert lint_paths([tmp_path]) == []


# --- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """No settings (so no Prometheus) and the two playbooks in a directory; an alert file."""
    for key in list(os.environ):
        if key.startswith("SELFHEAL_"):
            monkeypatch.delenv(key)
    config = tmp_path / "selfheal.yaml"
    config.write_text("remediation: {include_library: false}\n")
    monkeypatch.setenv("SELFHEAL_CONFIG", str(config))
    pbs = tmp_path / "playbooks"
    pbs.mkdir()
    (pbs / "oom.yaml").write_text(OOM)
    (pbs / "rollout.yaml").write_text(ROLLOUT)
    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "selfheal",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "web-1"},
                "annotations": {},
                "startsAt": "2026-01-05T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "f00d",
            }
        ],
    }
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(json.dumps(body))
    yield pbs, alert_file


def test_cli_match_shows_alternatives_and_run_time_params(cli: tuple[Path, Path]) -> None:
    pbs, alert_file = cli
    result = CliRunner().invoke(playbooks_app, ["match", str(alert_file), "--dir", str(pbs)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "f00d KubePodCrashLooping: crashloop-oom (mode approve) namespace=shop pod=web-1"
    assert lines[1] == (
        "  alternative 1: crashloop-rollout (mode auto) namespace=shop pod=web-1"
        " deployment=(resolved at run time)"
    )
    result = CliRunner().invoke(playbooks_app, ["match", str(alert_file), "--dir", str(pbs), "--json"])
    data = json.loads(result.stdout)["alerts"][0]
    assert data["playbook"] == "crashloop-oom" and data["deferred"] == []
    assert data["alternatives"] == [
        {
            "playbook": "crashloop-rollout",
            "mode": "auto",
            "params": {"namespace": "shop", "pod": "web-1"},
            "deferred": ["deployment"],
        }
    ]


def test_cli_plan_previews_each_candidate(cli: tuple[Path, Path]) -> None:
    pbs, alert_file = cli
    result = CliRunner().invoke(playbooks_app, ["plan", str(alert_file), "--dir", str(pbs)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "alert f00d (KubePodCrashLooping): playbook crashloop-oom (digest " in out
    assert "  alternative 1, tried if diagnose rules out crashloop-oom: playbook crashloop-rollout" in out
    assert "  resolved at run time from Prometheus: deployment\n" in out
    assert "params: namespace=shop, pod=web-1, deployment=(resolved at run time)" in out
    assert "run undo-rollout shop '<deployment>'" in out
    result = CliRunner().invoke(playbooks_app, ["plan", str(alert_file), "--dir", str(pbs), "--json"])
    data = json.loads(result.stdout)["alerts"][0]
    assert data["plan"]["playbook"] == "crashloop-oom"
    assert data["alternatives"][0]["plan"] is None and data["alternatives"][0]["deferred"] == ["deployment"]


def test_a_playbook_changed_since_matching_is_ruled_out(tmp_path: Path) -> None:
    """The match and the resolution are separate activities: a worker holding another version of
    the file must not render that one under the matched name."""
    firing = alert(namespace="shop", pod="web-1")
    candidate = load(tmp_path / "old", ROLLOUT).match(firing).candidates()[0]
    changed = load(tmp_path / "new", ROLLOUT.replace("undo-rollout", "rollout-undo"))
    prom = FakePrometheus({"owner_name": "web"})
    plan, reasons = changed.resolve(candidate, firing, prom)
    assert plan is None and reasons == [f"the playbook changed since it matched (digest {candidate.digest})"]
    assert prom.queries == []
