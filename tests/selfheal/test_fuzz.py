"""Fuzzing at the edges: whatever arrives, the API answers 2xx or a clear 4xx, never a 5xx.

Hypothesis generates Alertmanager bodies (valid ones with hostile label values, and broken ones),
Jira events (Cloud and Data Center shapes, mutated, correctly signed so the parser is reached),
and Schemathesis walks every operation of the API's OpenAPI document with and without
credentials. All of it goes over HTTP to the real app (real Temporal, in-process worker). The
runs are derandomized (the same examples on every run, so CI is reproducible) and small enough
for `make test`; raise `SELFHEAL_FUZZ_EXAMPLES` locally for a longer hunt.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.app import ApiServer, Stack, make_settings, user_token
from tests.support.jira import JiraFake
from tests.support.payloads import simple

EXAMPLES = int(os.environ.get("SELFHEAL_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
JIRA_SECRET = "fuzz-jira-secret"
JIRA_PAYLOADS = Path(__file__).parents[1] / "support" / "jira" / "payloads"

#: Label and annotation values an attacker controls: shell, template, path, control characters.
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "$(id)",
            "`id`",
            "; rm -rf /",
            "{{ 7*7 }}",
            "{% for x in () %}{% endfor %}",
            "../../etc/passwd",
            "a\nb",
            "\x00",
            "\u202e",
            "'\"",
            "x" * 2000,
        ]
    ),
)


def check_answer(resp: httpx.Response) -> None:
    """Never a 5xx; every 4xx is JSON naming what was wrong."""
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if 400 <= resp.status_code < 500 and resp.status_code != 405:
        body = resp.json()
        assert isinstance(body.get("error"), str) and body["error"], body


def _mutations(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The body with one key dropped, retyped, or replaced; or a list/scalar instead of it."""
    keys = sorted(base)
    junk = st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2))

    def drop(key: str) -> dict[str, Any]:
        return {k: v for k, v in base.items() if k != key}

    return st.one_of(
        st.sampled_from(keys).map(drop),
        st.tuples(st.sampled_from(keys), junk).map(lambda kv: {**base, kv[0]: kv[1]}),
        junk,
        st.dictionaries(st.text(max_size=8), junk, max_size=3),
    )


async def test_alertmanager_bodies_get_2xx_or_a_4xx_naming_the_field(stack: Stack) -> None:
    url = f"{stack.api.url}/api/v1/alerts"
    headers = {"Authorization": f"Bearer {stack.api.webhook_token}"}

    @FUZZ
    @given(
        labels=st.dictionaries(
            st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True), HOSTILE, max_size=5
        ),
        annotations=st.dictionaries(st.text(max_size=10), HOSTILE, max_size=3),
        broken=st.one_of(st.none(), _mutations(simple())),
    )
    def run(labels: dict[str, str], annotations: dict[str, str], broken: Any) -> None:
        if broken is None:
            body = simple()
            body["alerts"][0]["labels"].update(labels)
            body["alerts"][0]["annotations"].update(annotations)
        else:
            body = broken
        with httpx.Client(timeout=30) as http:
            resp = http.post(url, json=body, headers=headers)
        check_answer(resp)
        if resp.status_code == 422:
            assert all(e["path"].startswith("$") for e in resp.json().get("errors", [])), resp.text
        if broken is None and all("\x00" not in v for v in labels.values()):
            # A valid body with hostile values is data: accepted, not refused.
            assert resp.status_code in (200, 202), resp.text

    await asyncio.to_thread(run)


def _jira_events() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(JIRA_PAYLOADS.glob("*.json"))]


@pytest.mark.parametrize("cloud", [False, True], ids=["datacenter", "cloud"])
async def test_jira_events_as_sent_and_mutated_never_get_a_5xx(
    temporal_address: str, tmp_path: Path, cloud: bool
) -> None:
    events = _jira_events()
    assert len(events) >= 8, "the documented Cloud and Data Center payloads"

    def signed(raw: bytes, identifier: str) -> dict[str, str]:
        digest = hmac.new(JIRA_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        return {
            "content-type": "application/json",
            "X-Hub-Signature": f"sha256={digest}",
            "X-Atlassian-Webhook-Identifier": identifier,
        }

    jira = JiraFake(users={"bot": "token"}, cloud=cloud).__enter__()
    tracker = {
        "kind": "jira",
        "webhook_secret": JIRA_SECRET,
        "jira": {"url": jira.url, "project": "OPS", "user": "bot", "api_token": "token", "cloud": cloud},
    }
    api = ApiServer(make_settings(temporal_address, tmp_path / "data", tracker=tracker)).__enter__()
    url = f"{api.url}/api/v1/jira/webhook"

    @FUZZ
    @given(
        event=st.sampled_from(events).flatmap(lambda e: st.one_of(st.just(e), _mutations(e))),
        text=HOSTILE,
        n=st.integers(min_value=0, max_value=10**9),
    )
    def run(event: Any, text: str, n: int) -> None:
        if isinstance(event, dict) and isinstance(event.get("comment"), dict):
            event = {**event, "comment": {**event["comment"], "body": f"/selfheal approve {text}"}}
        raw = json.dumps(event).encode()
        with httpx.Client(timeout=30) as http:
            resp = http.post(url, content=raw, headers=signed(raw, f"fuzz-{n}"))
            check_answer(resp)
            unsigned = http.post(url, content=raw, headers={"content-type": "application/json"})
            assert unsigned.status_code == 401, unsigned.text

    try:
        await asyncio.to_thread(run)
    finally:
        api.__exit__(None, None, None)
        jira.__exit__(None, None, None)


async def test_every_api_operation_with_and_without_credentials(stack: Stack) -> None:
    """Schemathesis over the served OpenAPI document: each operation as anonymous, as a viewer,
    as an approver and as Alertmanager; no 5xx, and a 4xx always says why."""
    doc = (await stack.http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(doc)
    callers = {
        "anonymous": {},
        "viewer": {"Authorization": f"Bearer {user_token('viewer')}"},
        "approver": {"Authorization": f"Bearer {user_token('oncall')}"},
        "alertmanager": {"Authorization": f"Bearer {stack.api.webhook_token}"},
    }
    per_operation = max(5, EXAMPLES // 4)
    seen: list[str] = []

    def run() -> None:
        for result in schema.get_all_operations():
            operation = result.ok()
            seen.append(f"{operation.method.upper()} {operation.path}")

            @settings(
                max_examples=per_operation,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(), caller=st.sampled_from(sorted(callers)))
            def call(case: Any, caller: str) -> None:
                resp = case.call(base_url=stack.api.url, headers=callers[caller], timeout=30)
                assert resp.status_code < 500, (caller, case.method, case.formatted_path, resp.text[:300])
                if caller == "anonymous" and case.operation.path not in ("/healthz", "/readyz", "/metrics"):
                    # 401; the Jira webhook (its own signature, disabled here) answers 403.
                    assert resp.status_code in (401, 403), (case.formatted_path, resp.status_code)
                if 400 <= resp.status_code < 500 and resp.status_code != 405:
                    assert resp.json().get("error"), (case.formatted_path, resp.text[:300])

            call()

    await asyncio.to_thread(run)
    for path in ("/api/v1/alerts", "/api/v1/incidents/{incident_id}/decision", "/api/v1/jira/webhook"):
        assert any(path in s for s in seen), (path, seen)
