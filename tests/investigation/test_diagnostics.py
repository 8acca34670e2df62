"""Playbook `diagnostics`: information attached to the investigation and the ticket, never a gate.

A suggest-only playbook may consist of diagnostics alone (no fix); each entry is a PromQL query or
an object's recent events, read through the real `kubernetes` client from the Kubernetes API test
server. A read that fails says why and leaves the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.investigation import InvestigationActivities
from connectors.kube.api import KubeApi, build_api_client
from connectors.kube.settings import KubeSettings
from connectors.kube.verbs import KubeActions
from models.incident import WebhookAlert
from models.remediation import InvestigationRequest
from pages.render import render_markdown
from pages.ticket import build_page
from playbooks.loader import load_file
from playbooks.matcher import PlaybookSet
from tests.evals.harness import build_view, load_cases
from tests.support.kube import KubeFake, objects
from tests.support.payloads import note, simple

SUGGEST = {
    "apiVersion": "selfheal/v1",
    "kind": "Playbook",
    "name": "pod-not-ready-info",
    "description": "Show why the pod is not ready; fix nothing",
    "match": {"alertname": "KubePodNotReady", "matchers": ['pod=~".+"']},
    "target": "{{ params.namespace }}/{{ params.pod }}",
    "params": {
        "namespace": {"from": "label", "key": "namespace", "pattern": "^[a-z0-9-]{1,63}$"},
        "pod": {"from": "label", "key": "pod", "pattern": "^[a-z0-9.-]{1,253}$"},
    },
    "policy": {"mode": "suggest"},
    "diagnostics": [
        {
            "name": "pod events",
            "kube_events": {"kind": "Pod", "namespace": "{{ params.namespace }}", "name": "{{ params.pod }}"},
        },
        {"name": "phase", "query": 'kube_pod_status_phase{pod="{{ params.pod }}"} == 1'},
    ],
}


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_only_a_suggest_playbook_may_have_no_fix(tmp_path: Path) -> None:
    playbook, problems = load_file(write(tmp_path, SUGGEST))
    assert playbook is not None, problems
    approve = {**SUGGEST, "name": "pod-not-ready-approve", "policy": {"mode": "approve"}}
    playbook, problems = load_file(write(tmp_path, approve))
    assert playbook is None and any("only a `mode: suggest` playbook may have none" in p for p in problems)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "both", "query": "up", "kube_events": {"kind": "Node", "name": "n1"}}, "exactly one of"),
        ({"name": "neither"}, "exactly one of"),
        ({"name": "ns", "kube_events": {"kind": "Pod", "name": "p"}}, "namespace: required"),
        ({"name": "kind", "kube_events": {"kind": "Secret", "namespace": "a", "name": "p"}}, "kind"),
    ],
)
def test_a_diagnostic_reads_exactly_one_thing(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    doc = {**SUGGEST, "diagnostics": [entry]}
    playbook, problems = load_file(write(tmp_path, doc))
    assert playbook is None and any(message in p for p in problems), problems


def alert(**labels: str) -> WebhookAlert:
    given = {"namespace": "shop", "pod": "cart-7d9f8b6c5d-x2x7k", **labels}
    body = simple(alertname="KubePodNotReady", **given)
    return note(body).notification.alerts[0]


def test_hostile_names_never_reach_the_events_read(tmp_path: Path) -> None:
    playbook, _ = load_file(
        write(
            tmp_path,
            {
                **SUGGEST,
                "params": {
                    **SUGGEST["params"],
                    "pod": {"from": "label", "key": "pod", "pattern": "^.{1,300}$"},
                },
            },
        )
    )
    assert playbook is not None
    result = PlaybookSet([playbook]).match(alert(pod="x,involvedObject.kind=Secret"))
    assert result.plan is None and any("pod events" not in r and "name" in r for r in result.reasons)


@pytest.fixture
def fake() -> Iterator[KubeFake]:
    with KubeFake() as server:
        server.add(
            objects.event(
                "shop",
                "Pod",
                "cart-7d9f8b6c5d-x2x7k",
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                count=14,
            ),
            objects.event(
                "shop",
                "Pod",
                "cart-7d9f8b6c5d-x2x7k",
                "Pulled",
                "Container image already present",
                type_="Normal",
                last="2025-01-01T00:01:00Z",
            ),
            objects.event("shop", "Pod", "other-pod", "BackOff", "not this pod's"),
        )
        yield server


async def test_diagnostics_reach_the_investigation_and_the_ticket(tmp_path: Path, fake: KubeFake) -> None:
    playbook, _ = load_file(write(tmp_path, SUGGEST))
    assert playbook is not None
    match = PlaybookSet([playbook]).match(alert())
    assert match.plan is not None and not match.plan.fix
    settings = KubeSettings(kubeconfig=fake.kubeconfig(tmp_path), namespaces=["shop"])
    kube = KubeActions(KubeApi(build_api_client(settings)), settings)
    acts = InvestigationActivities(None, kube)
    case = next(c for c in load_cases() if c.name.startswith("known-"))  # a ready-made incident view
    view = build_view(case)
    inv = await ActivityEnvironment().run(acts.investigate, InvestigationRequest(view=view, match=match))
    events, phase = inv.diagnostics
    assert events.lines[0].startswith("Warning Unhealthy (x14): Readiness probe failed")
    assert events.lines[1].startswith("Normal Pulled") and len(events.lines) == 2
    assert phase.error == "no Prometheus configured"
    page = render_markdown(build_page(view.model_copy(update={"investigation": inv}), ""))
    assert "Diagnostics" in page and "Readiness probe failed" in page
    assert "events of Pod shop/cart-7d9f8b6c5d-x2x7k" in page
    listed = [c for c in fake.calls() if c.resource == "events"]
    assert [(c.verb, c.namespace) for c in listed] == [("list", "shop")]


def test_events_outside_the_allowed_namespaces_are_refused(tmp_path: Path, fake: KubeFake) -> None:
    settings = KubeSettings(kubeconfig=fake.kubeconfig(tmp_path), namespaces=["payments"])
    kube = KubeActions(KubeApi(build_api_client(settings)), settings)
    with pytest.raises(Exception, match=r"not in kube\.namespaces"):
        kube.events("Pod", "shop", "cart-7d9f8b6c5d-x2x7k")
    assert not [c for c in fake.calls() if c.resource == "events"]
