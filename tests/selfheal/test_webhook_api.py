"""The Alertmanager webhook over a real socket: auth, limits, validation, dedup, lifecycle."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from tests.support.app import Stack
from tests.support.payloads import am025, node_outage, simple, unique_group


async def test_requires_auth(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url) as anon:
        resp = await anon.post("/api/v1/alerts", json=simple())
        assert resp.status_code == 401
        assert "error" in resp.json()
        resp = await anon.post("/api/v1/alerts", json=simple(), headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401
        token = stack.settings.webhook_token.get_secret_value()  # type: ignore[union-attr]
        basic = base64.b64encode(f"alertmanager:{token}".encode()).decode()
        resp = await anon.post("/api/v1/alerts", json=simple(), headers={"Authorization": f"Basic {basic}"})
        assert resp.status_code == 202, resp.text
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/api/v1/incidents")).status_code == 401


async def test_invalid_body_names_the_field(stack: Stack) -> None:
    payload = simple()
    payload["alerts"][0]["status"] = "burning"
    resp = await stack.post_alerts(payload)
    assert resp.status_code == 422
    paths = [e["path"] for e in resp.json()["errors"]]
    assert "$.alerts[0].status" in paths
    resp = await stack.http.post(
        "/api/v1/alerts", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    bad_version = simple()
    bad_version["version"] = "3"
    resp = await stack.post_alerts(bad_version)
    assert resp.status_code == 422
    assert [e["path"] for e in resp.json()["errors"]] == ["$.version"]


async def test_unknown_fields_are_ignored(stack: Stack) -> None:
    payload = simple()
    payload["notification_reason"] = "repeat_interval"
    payload["alerts"][0]["newField"] = {"x": 1}
    resp = await stack.post_alerts(payload)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "accepted"


@pytest.mark.settings(max_body_bytes=4096)
async def test_body_limit(stack: Stack) -> None:
    payload = simple()
    payload["commonAnnotations"]["huge"] = "x" * 5000
    resp = await stack.post_alerts(payload)
    assert resp.status_code == 413
    # Without a Content-Length (chunked), the limit still holds.
    body = httpx.ByteStream(b"".join([b'{"a": "', b"y" * 6000, b'"}']))

    async def chunks():  # type: ignore[no-untyped-def]
        for part in (b'{"a": "', b"y" * 6000, b'"}'):
            yield part

    del body
    resp = await stack.http.post(
        "/api/v1/alerts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413


async def test_node_outage_of_1200_alerts_is_accepted_and_bounded_on_the_incident(stack: Stack) -> None:
    """1,200 kube-prometheus alerts (1.3 MiB, over the old 1 MiB limit that Alertmanager never
    retries past) become one incident holding the first 500 firing alerts, the rest counted."""
    payload = node_outage(unique_group(), 1200, resolved=100)
    payload["truncatedAlerts"] = 3  # Alertmanager's own max_alerts left some out already
    raw = json.dumps(payload).encode()
    assert len(raw) > 1024 * 1024
    resp = await stack.http.post("/api/v1/alerts", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 202, resp.text
    view = await stack.wait_for(resp.json()["incident_id"], lambda v: v["ticket"] is not None)
    assert len(view["alerts"]) == 500
    assert all(a["status"] == "firing" for a in view["alerts"]), "firing alerts are kept first"
    assert view["truncated_alerts"] == 700 + 3
    ticket = (await stack.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert "left out 703 more alerts of this group" in ticket["description"]
    # The same snapshot again keeps the same alerts: the incident's alert set does not churn.
    again = await stack.http.post("/api/v1/alerts", content=raw, headers={"content-type": "application/json"})
    assert again.status_code == 202
    view = await stack.wait_for(view["id"], lambda v: v["notifications"] == 2)
    assert len(view["alerts"]) == 500


async def test_same_payload_five_times_and_two_ha_peers_make_one_incident(stack: Stack) -> None:
    payload = am025("firing", unique_group())
    ids = []
    for _ in range(5):
        resp = await stack.post_alerts(payload)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["incident_id"])

    async def peer() -> list[str]:
        async with stack.api.client() as http:
            results = await asyncio.gather(*(http.post("/api/v1/alerts", json=payload) for _ in range(10)))
        assert all(r.status_code == 202 for r in results), [r.text for r in results]
        return [r.json()["incident_id"] for r in results]

    a, b = await asyncio.gather(peer(), peer())
    assert len(set(ids + a + b)) == 1
    incident_id = ids[0]
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    assert view["notifications"] == 25
    assert stack.tracker.count() == 1
    listed = (await stack.http.get("/api/v1/incidents")).json()["incidents"]
    assert [i["id"] for i in listed].count(incident_id) == 1
    ticket = (await stack.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    # Identical snapshots change nothing, so the ticket holds only the escalation comment.
    assert len(ticket["comments"]) == 1
    assert "Escalated" in ticket["comments"][0]["body"]
    # ...and cost no search-attribute upsert each: only the identity and stage changes are written.
    history = await stack.client.get_workflow_handle(
        "incident-" + incident_id.rsplit("-", 1)[0]
    ).fetch_history()
    upserted = [
        sorted(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    ours = [keys for keys in upserted if keys != ["TemporalChangeVersion"]]  # patch markers aside
    assert 1 <= len(ours) <= 6, ours


@pytest.mark.settings(incident={"resolve_quiet_seconds": 0})
async def test_alertmanager_025_firing_partial_resolved_lifecycle(stack: Stack) -> None:
    group = unique_group()
    resp = await stack.post_alerts(am025("firing", group))
    assert resp.status_code == 202
    incident_id = resp.json()["incident_id"]
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    assert {a["status"] for a in view["alerts"]} == {"firing"}
    assert len(view["alerts"]) == 2
    assert view["service"] == "checkout" and view["severity"] == "critical"
    assert view["ticket"]["key"].startswith("LOCAL-")

    resp = await stack.post_alerts(am025("partial", group))
    assert resp.json()["incident_id"] == incident_id
    view = await stack.wait_for(
        incident_id, lambda v: sorted(a["status"] for a in v["alerts"]) == ["firing", "resolved"]
    )
    assert view["status"] == "firing"

    resp = await stack.post_alerts(am025("resolved", group))
    assert resp.json()["incident_id"] == incident_id
    view = await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "resolved"
    ticket = (await stack.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert ticket["status"] == "Done"
    bodies = [c["body"] for c in ticket["comments"]]
    assert any("is now resolved" in b for b in bodies)
    assert any("closing" in b for b in bodies)

    # The group closed: a resolved resend opens nothing, a new firing opens a new incident.
    resp = await stack.post_alerts(am025("resolved", group))
    assert resp.json() == {"incident_id": None, "status": "ignored"}
    resp = await stack.post_alerts(am025("firing", group))
    assert resp.status_code == 202
    new_id = resp.json()["incident_id"]
    assert new_id != incident_id
    await stack.wait_for(new_id, lambda v: v["stage"] == "awaiting_decision")
    assert stack.tracker.count() == 2
    old = await stack.incident(incident_id)
    assert old["stage"] == "closed"


async def test_resolved_only_notification_opens_nothing(stack: Stack) -> None:
    resp = await stack.post_alerts(simple("resolved"))
    assert resp.status_code == 200
    assert resp.json() == {"incident_id": None, "status": "ignored"}
    assert stack.tracker.count() == 0


async def test_refire_within_quiet_period_stays_one_incident(stack: Stack) -> None:
    group = unique_group()
    first = (await stack.post_alerts(am025("firing", group))).json()["incident_id"]
    await stack.wait_for(first, lambda v: v["stage"] == "awaiting_decision")
    await stack.post_alerts(am025("resolved", group))
    await stack.wait_for(first, lambda v: v["status"] == "resolved")
    again = (await stack.post_alerts(am025("firing", group))).json()["incident_id"]
    assert again == first
    view = await stack.wait_for(first, lambda v: v["status"] == "firing")
    assert [e["kind"] for e in view["timeline"]].count("refired") == 1
    assert stack.tracker.count() == 1


async def test_list_filters_and_openapi(stack: Stack) -> None:
    a = (await stack.post_alerts(simple(service="svc-a"))).json()["incident_id"]
    b = (await stack.post_alerts(simple(service="svc-b"))).json()["incident_id"]
    await stack.wait_for(a, lambda v: v["stage"] == "awaiting_decision")
    await stack.wait_for(b, lambda v: v["stage"] == "awaiting_decision")
    listed = (await stack.http.get("/api/v1/incidents", params={"service": "svc-a"})).json()["incidents"]
    assert [i["id"] for i in listed] == [a]
    both = (await stack.http.get("/api/v1/incidents", params={"stage": "awaiting_decision"})).json()[
        "incidents"
    ]
    ids = [i["id"] for i in both]
    assert a in ids and b in ids
    assert ids.index(b) < ids.index(a), "newest first"
    bad = await stack.http.get("/api/v1/incidents", params={"service": "x' OR 1=1"})
    assert bad.status_code == 422
    spec = (await stack.http.get("/openapi.json")).json()
    assert "/api/v1/alerts" in spec["paths"]
    assert "/api/v1/incidents/{incident_id}/decision" in spec["paths"]
    metrics = (await stack.http.get("/metrics")).text
    assert 'selfheal_webhook_notifications_total{result="accepted"}' in metrics
    assert (await stack.http.get("/readyz")).status_code == 200
