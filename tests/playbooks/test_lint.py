"""Lint: every problem is reported as `file:line: message`, pointing at the offending line."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.incident import WebhookAlert
from playbooks.loader import LIBRARY_DIR, PlaybookError, lint_paths, load_playbooks
from tests.support.library import needs_full_library

BASE = """\
apiVersion: selfheal/v1
kind: Playbook
name: restart-api
description: Restart the api unit when its target is down
match:
  alertname: TargetDown
  matchers: ['job="api"']
target: "{{ params.host }}"
params:
  host: {from: label, key: host, pattern: '^[a-z0-9][a-z0-9.-]{0,62}$'}
fix:
  - command: {argv: [systemctl, --host, "{{ params.host }}", restart, api.service]}
"""


def write(directory: Path, text: str, name: str = "playbook.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def lint_one(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = write(tmp_path, text)
    return path, lint_paths([path])


def assert_reported(errors: list[str], path: Path, line: int, *fragments: str) -> None:
    hits = [e for e in errors if e.startswith(f"{path}:{line}: ") and all(f in e for f in fragments)]
    assert hits, f"no error at {path}:{line} with {fragments}; got:\n" + "\n".join(errors)


def test_base_is_valid(tmp_path: Path) -> None:
    assert lint_one(tmp_path, BASE)[1] == []


def test_unknown_keys(tmp_path: Path) -> None:
    text = BASE.replace("target:", "colour: blue\ntarget:").replace(
        "restart, api.service]}", "restart, api.service], shell: true}"
    )
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "colour"), "colour: unknown key")
    assert_reported(errors, path, line_of(text, "shell: true"), "fix.0.command.shell: unknown key")


def test_bad_param_regex(tmp_path: Path) -> None:
    text = BASE.replace("'^[a-z0-9][a-z0-9.-]{0,62}$'", "'^[a-z('")
    path, errors = lint_one(tmp_path, text)
    assert_reported(
        errors, path, line_of(text, "^[a-z("), "params.host.pattern", "invalid regular expression"
    )


def test_bad_matcher(tmp_path: Path) -> None:
    text = BASE.replace("matchers: ['job=\"api\"']", "matchers:\n    - 'job=\"api\"'\n    - 'zone=~\"eu(\"'")
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "zone=~"), "match.matchers.1", "invalid regex")
    text = BASE.replace("matchers: ['job=\"api\"']", "matchers: ['job==api']")
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "job==api"), "match.matchers.0", "invalid matcher")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ alert.labels.host }}", "alert.labels is not available"),
        ("{{ alert.annotations['x'] }}", "alert.annotations is not available"),
        ("{{ params.undeclared }}", "params.undeclared is not a declared param"),
        ("{{ settings.__class__ }}", "settings.__class__ is not allowed"),
        ("{{ ''.__class__ }}", "access to '__class__' on a constant"),
        ("{{ params.host.__class__ }}", "'__class__' of a value is not allowed"),
        ("{{ params.host.upper() }}", "not allowed"),
        ("{{ cycler.__init__ }}", "template uses 'cycler'"),
        ("{{ params }}", "use params.<name>"),
        ("{{ 7 * 7 }}", "arithmetic not allowed"),
        ("{% for x in [1] %}{% endfor %}", "{% for %} loops not allowed"),
        ("{{ params.host | attr('x') }}", "filter 'attr' is not allowed"),
        ("{{ params.host", "template syntax error"),
    ],
)
def test_templates_touching_anything_else(tmp_path: Path, template: str, message: str) -> None:
    text = BASE.replace("restart, api.service]}", f'restart,\n      "{template}"]}}')
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, f'"{template}"'), "fix.0.command.argv.4", message)


def test_template_errors_point_at_their_own_line(tmp_path: Path) -> None:
    text = BASE + (
        "verify:\n"
        "  query: >-\n"
        '    up{host="{{ params.host }}"}\n'
        "  condition: '== 1'\n"
        "diagnose:\n"
        "  - name: still down\n"
        '    query: up{host="{{ alert.labels.host }}"}\n'
        "    condition: '== 0'\n"
    )
    text = text.replace('target: "{{ params.host }}"', 'target: "{{ settings.__class__ }}"')
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "target:"), "target: settings.__class__")
    assert_reported(errors, path, line_of(text, "alert.labels"), "diagnose.0.query: alert.labels")
    assert len(errors) == 2


def test_templates_only_in_string_values(tmp_path: Path) -> None:
    text = BASE + "policy: {max_runs: '{{ params.host }}'}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "max_runs"), "policy.max_runs", "valid integer")
    text = BASE.replace(
        '  - command: {argv: [systemctl, --host, "{{ params.host }}", restart, api.service]}',
        "  - http:\n      url: https://api.example/restart\n      json: {'{{ params.host }}': 1}",
    )
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "json:"), "only allowed in string values")


def test_two_actions_in_one_step(tmp_path: Path) -> None:
    text = BASE + "    http: {url: 'https://api.example/restart'}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "- command"), "fix.0", "exactly one action", "command, http")


def test_step_without_action(tmp_path: Path) -> None:
    text = BASE + "  - name: nothing to do\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "nothing to do"), "fix.1", "exactly one action", "got 0")


def test_test_step_must_be_a_command(tmp_path: Path) -> None:
    text = BASE + "repo: ops\ntest:\n  - git_edit: {file: a.yaml, key: b, value: 1}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(
        errors, path, line_of(text, "git_edit"), "test.0", "`git_edit` is not allowed in test steps"
    )
    text = BASE + "test:\n  - command: {argv: [pytest], sandbox: false}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "sandbox: false"), "test.0", "always run sandboxed")


def test_phase_action_kinds(tmp_path: Path) -> None:
    text = BASE + "deploy:\n  - git_revert: {since: 1h, paths: [a]}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "git_revert"), "deploy.0", "not allowed in deploy steps")
    text = BASE + "rollback:\n  - command: {argv: [systemctl, stop, api.service], bogus: 1}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "bogus"), "rollback.0.command.bogus: unknown key")


def test_git_steps_need_a_repo(tmp_path: Path) -> None:
    text = BASE + "deploy:\n  - git_push: {branch: main}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, 1, "repo: required", "git_push")
    path, errors = lint_one(tmp_path, text + "repo: ops\n")
    assert errors == []
    line = line_of(text + "repo: ops", "repo: ops")
    assert lint_paths([path], known_repos={"config"}) == [
        f"{path}:{line}: repo: 'ops' is not configured (remediation.repos: config)"
    ]
    with pytest.raises(PlaybookError) as raised:
        load_playbooks([path], include_library=False, known_repos=["config"])
    assert raised.value.errors == lint_paths([path], known_repos={"config"})


@needs_full_library
def test_library_playbooks_wait_for_their_repo() -> None:
    """A library playbook whose repo is not configured is skipped, not an error, and matching says so."""
    assert lint_paths([LIBRARY_DIR], known_repos=[]) == []
    playbooks = load_playbooks([], known_repos=["config"])
    skipped = {p.name: why for p, why in playbooks.skipped}
    gitops = {p.stem for p in LIBRARY_DIR.glob("*.yaml") if "\nrepo: gitops\n" in p.read_text()}
    assert {"oom-raise-memory-limit", "hpa-raise-max-replicas"} <= gitops
    assert skipped == dict.fromkeys(gitops, "'gitops' is not configured (remediation.repos: config)")
    assert "revert-bad-config-deploy" in playbooks.by_name and "cert-renew" in playbooks.by_name
    alert = WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "KubeHpaMaxedOut", "namespace": "a", "horizontalpodautoscaler": "b"},
            "startsAt": "2026-01-05T10:00:00Z",
            "fingerprint": "abc",
        }
    )
    result = playbooks.match(alert)
    assert result.playbook is None
    assert result.reasons == [
        "hpa-raise-max-replicas: not loaded: repo 'gitops' is not configured (remediation.repos: config)"
    ]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("git_edit: {file: /etc/passwd, key: a, value: 1}", "must be relative"),
        ("git_edit: {file: '../{{ params.host }}.yaml', key: a, value: 1}", "'..' component"),
        ("git_edit: {file: 'a/./b.yaml', key: a, value: 1}", "not normalised"),
        ("git_edit: {file: '.git/config', key: a, value: 1}", "points into .git"),
        ("git_revert: {since: 2h, paths: ['/srv/**']}", "must be relative"),
        ("command: {argv: [make], cwd: /tmp}", "must be relative"),
        ("command: {argv: ['{{ params.host }}']}", "argv[0]) must be literal"),
        ("http: {url: 'https://{{ params.host }}/restart'}", "host must not depend on params"),
        ("http: {url: 'file:///etc/passwd'}", "must be http:// or https://"),
        ("git_revert: {since: soon, paths: [a]}", "invalid duration"),
        ("git_edit: {file: a.yaml, key: a, scale: 2, value: 3}", "exactly one of value or scale"),
    ],
)
def test_unsafe_literals(tmp_path: Path, field: str, message: str) -> None:
    text = BASE + f"repo: ops\nrollback:\n  - {field}\n"
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, field), "rollback.0", message)


def test_param_definitions(tmp_path: Path) -> None:
    text = BASE.replace(
        "params:\n",
        "params:\n  window: {from: annotation, key: window, pattern: '^[0-9]+m$', default: 2h}\n"
        "  Bad-Name: {from: label, key: x, pattern: '.*'}\n"
        "  __class__: {from: label, key: x, pattern: '.*'}\n"
        "  zone: {from: label, key: 'not a label', pattern: '.*'}\n",
    )
    path, errors = lint_one(tmp_path, text)
    assert_reported(errors, path, line_of(text, "window:"), "params.window.default", "does not match")
    assert_reported(errors, path, line_of(text, "Bad-Name"), "not a valid param name")
    assert_reported(errors, path, line_of(text, "__class__"), "not a valid param name")
    assert_reported(errors, path, line_of(text, "not a label"), "params.zone.key", "not a valid label name")


def test_yaml_problems(tmp_path: Path) -> None:
    text = BASE.replace("kind: Playbook", "kind: Playbook\nname: again")
    path, errors = lint_one(tmp_path, text)
    duplicate = line_of(text, "name: restart-api")  # the second occurrence
    assert len(errors) == 1 and errors[0].startswith(f"{path}:{duplicate}: invalid YAML")
    assert "duplicate key" in errors[0]
    path, errors = lint_one(tmp_path, "apiVersion: selfheal/v1\nkind: [\n")
    assert len(errors) == 1 and errors[0].startswith(f"{path}:") and "invalid YAML" in errors[0]
    path, errors = lint_one(tmp_path, "- a list\n")
    assert errors == [f"{path}:1: a playbook is a YAML mapping (apiVersion, kind, name, match, ...)"]
    assert lint_paths([tmp_path / "missing"]) == [f"{tmp_path / 'missing'}: no such file or directory"]


def test_duplicate_names_name_both_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a", BASE)
    b = write(tmp_path / "b", "# same name\n" + BASE)
    errors = lint_paths([tmp_path / "a", tmp_path / "b"])
    assert errors == [
        f"{b}:{line_of(BASE, 'name:') + 1}: name: duplicate playbook name 'restart-api'"
        f" (also in {a}:{line_of(BASE, 'name:')})"
    ]
    with pytest.raises(PlaybookError) as raised:
        load_playbooks([tmp_path / "a", tmp_path / "b"], include_library=False)
    assert raised.value.errors == errors


@needs_full_library
def test_library_names_are_reserved(tmp_path: Path) -> None:
    text = BASE.replace("name: restart-api", "name: cert-renew")
    write(tmp_path, text)
    with pytest.raises(PlaybookError) as raised:
        load_playbooks([tmp_path])
    assert "duplicate playbook name 'cert-renew'" in raised.value.errors[0]


def test_tie_between_playbooks(tmp_path: Path) -> None:
    write(tmp_path, BASE, "a.yaml")
    write(tmp_path, BASE.replace("name: restart-api", "name: restart-api-too"), "b.yaml")
    errors = lint_paths([tmp_path])
    line = line_of(BASE, "match:")
    assert errors == [
        f"{tmp_path / 'a.yaml'}:{line}: match: playbook 'restart-api' ties with 'restart-api-too'"
        f" ({tmp_path / 'b.yaml'}:{line}): same alertname 'TargetDown', priority 0 and 1 matcher(s),"
        " and the matchers are not provably disjoint;"
        " change a priority or add a matcher that tells them apart"
    ]
    # Loading still works (matching then picks by name and says so).
    assert len(load_playbooks([tmp_path], include_library=False)) == 2


@pytest.mark.parametrize(
    ("other_match", "tie"),
    [
        ("matchers: ['job=\"web\"']", False),  # pinned to different values: disjoint
        ("matchers: ['job!=\"api\"']", False),
        ("matchers: ['job=~\"web|db\"']", False),
        ("matchers: ['job=~\"api|web\"']", True),
        ("matchers: ['zone=\"eu\"']", True),  # different labels: both can match one alert
        ("matchers: ['job=\"api\"']\n  priority: 5", False),  # precedence orders them
        ("matchers: ['job=\"api\"', 'zone=\"eu\"']", False),  # more specific wins
    ],
)
def test_tie_detection_is_conservative(tmp_path: Path, other_match: str, tie: bool) -> None:
    write(tmp_path, BASE, "a.yaml")
    other = BASE.replace("name: restart-api", "name: other").replace("matchers: ['job=\"api\"']", other_match)
    write(tmp_path, other, "b.yaml")
    errors = lint_paths([tmp_path])
    assert bool(errors) == tie, errors
