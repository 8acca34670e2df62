"""The `/ui` web page on the real stack: sign in with an API token, read incidents, decide as the
signed-in approver — in a real headless Chromium, and the refusals over plain HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from connectors.local_tracker import LocalTracker
from connectors.prometheus import PrometheusClient
from connectors.temporal import connect
from demo.observability import prometheus_server
from selfheal.auth import UserSettings, new_token, token_sha256
from selfheal.worker import build_worker
from tests.support.app import ApiServer, Stack, make_settings
from tests.support.metric_target import MetricTarget
from tests.support.payloads import simple

APPROVER_TOKEN = new_token()
VIEWER_TOKEN = new_token()
USERS = {
    "users": {
        "approver1": {"roles": ["approver"], "token_sha256": token_sha256(APPROVER_TOKEN)},
        "viewer1": {"roles": ["viewer"], "token_sha256": token_sha256(VIEWER_TOKEN)},
    }
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_FORM_ID = re.compile(r'name="form_id" value="([^"]+)"')


async def _escalated(stack: Stack) -> str:
    resp = await stack.post_alerts(simple())
    incident_id: str = resp.json()["incident_id"]
    await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    return incident_id


def _csrf(page: str) -> str:
    found = _CSRF.search(page)
    assert found, page
    return found.group(1)


async def _signed_in(http: httpx.AsyncClient, token: str) -> None:
    form = await http.get("/ui/signin")
    resp = await http.post("/ui/signin", data={"csrf": _csrf(form.text), "token": token})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/incidents", resp.text


def _browser_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.api.url, timeout=60)


@pytest.fixture
async def graphed(temporal_address: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with a real Prometheus scraping a metric of the alert's service, so the incident's
    evidence has a graph attached to its ticket."""
    target = MetricTarget().start()
    target.set("ui_errors", 0.3, service="checkout")
    try:
        with prometheus_server(tmp_path / "prom", [target.url]) as prom_url:
            with PrometheusClient(prom_url, timeout=5) as prom:
                deadline = datetime.now(UTC) + timedelta(seconds=60)
                while not prom.query('ui_errors{service="checkout"}'):
                    assert datetime.now(UTC) < deadline, "Prometheus never scraped the target"
                    await asyncio.sleep(0.2)
            settings = make_settings(
                temporal_address,
                tmp_path / "data",
                auth=USERS,
                evidence={
                    "prometheus_url": prom_url,
                    "default_service": {"golden_signals": {"errors": 'ui_errors{service="{service}"}'}},
                },
            )
            client = await connect(settings.temporal)
            tracker = LocalTracker(settings.local_db_path)
            async with build_worker(client, settings, tracker):
                with ApiServer(settings) as api:
                    async with api.client() as http:
                        yield Stack(settings=settings, client=client, api=api, tracker=tracker, http=http)
    finally:
        target.stop()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (CI installs Debian's `chromium`)")
async def test_approver_signs_in_opens_the_escalated_incident_and_approves_in_a_browser(
    graphed: Stack, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    stack = graphed
    alert = simple()
    alert["alerts"][0]["startsAt"] = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    incident_id = (await stack.post_alerts(alert)).json()["incident_id"]
    await stack.wait_for(incident_id, lambda v: v["stage"] == "awaiting_decision")
    shots: list[Path] = []
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = await browser.new_page()
            # Every page is behind the sign-in; a deep link lands on the form.
            await page.goto(f"{stack.api.url}/ui/incidents/{incident_id}")
            assert page.url.endswith("/ui/signin")
            await page.fill("#token", "shu_not-a-token")
            await page.click("#signin")
            await expect(page.locator("#message")).to_have_text("unknown token")
            await page.fill("#token", APPROVER_TOKEN)
            await page.click("#signin")
            await expect(page.locator("#who")).to_contain_text("approver1")

            row = page.locator("#incidents tr", has_text=incident_id)
            await expect(row).to_contain_text("awaiting_decision")
            shots.append(tmp_path / "ui-1-incidents.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)

            await row.locator("a").first.click()
            await expect(page.locator("#stage")).to_have_text("awaiting_decision")
            await expect(page.locator("#page h2").first).to_be_visible()
            await expect(page.locator("#page")).to_contain_text("Timeline")
            # The metric graph is inline: the ticket's attachment, served under /ui, decoded.
            graph = page.locator("#page figure img").first
            await expect(graph).to_have_attribute("src", re.compile(r"^/ui/tickets/LOCAL-\d+/attachments/"))
            assert await graph.evaluate("img => img.complete && img.naturalWidth") > 0
            shots.append(tmp_path / "ui-2-escalated.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)

            await page.fill("#comment", "known blip <b>not markup</b>")
            await page.click("#approve")
            await expect(page.locator("#decision")).to_have_text(
                "Approved by approver1 via ui: known blip <b>not markup</b>"
            )
            timeline = page.locator("#page table").last
            await expect(timeline).to_contain_text("Approved by approver1 via ui")
            await expect(page.locator("#approve")).to_have_count(0)
            shots.append(tmp_path / "ui-3-approved.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)

            # The incident goes on to close; the page shows it once it has.
            await stack.wait_for(incident_id, lambda v: v["stage"] == "closed")
            await page.reload()
            await expect(page.locator("#stage")).to_have_text("closed")
            await expect(page.locator("#outcome")).to_have_text("approved")
            shots.append(tmp_path / "ui-4-closed.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)
        finally:
            await browser.close()
    view = await stack.incident(incident_id)
    assert view["decision"]["by"] == "approver1" and view["decision"]["source"] == "ui"
    for shot in shots:
        assert shot.stat().st_size > 0
        print(f"screenshot: {shot}")


@pytest.mark.settings(auth=USERS)
async def test_sign_in_session_csrf_and_roles_over_http(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    async with _browser_client(stack) as anon:
        # Nobody signed in: every page sends to the sign-in form, even with the webhook token.
        webhook = {"Authorization": f"Bearer {stack.settings.webhook_token.get_secret_value()}"}  # type: ignore[union-attr]
        for path in (
            "/ui/incidents",
            f"/ui/incidents/{incident_id}",
            "/ui/tickets/LOCAL-1/attachments/a.png",
        ):
            async with _browser_client(stack) as fresh:
                resp = await fresh.get(path, headers=webhook)
            assert resp.status_code == 303 and resp.headers["location"] == "/ui/signin", path
        form = await anon.get("/ui/signin")
        assert form.status_code == 200
        headers = form.headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        # The session cookie: not readable by script, never sent cross-site, only to /ui.
        cookie = headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        assert "secure" not in cookie  # the public URL is http here
        assert "<script" not in form.text.lower()
        # A sign-in without the form's token (another site posting it) is refused.
        forged = await anon.post("/ui/signin", data={"csrf": "x" * 43, "token": APPROVER_TOKEN})
        assert forged.status_code == 403 and "form expired" in forged.text
        wrong = await anon.post("/ui/signin", data={"csrf": _csrf(forged.text), "token": "nope"})
        assert wrong.status_code == 401 and "unknown token" in wrong.text
        # The webhook token is no user's token.
        webhook_token = stack.settings.webhook_token.get_secret_value()  # type: ignore[union-attr]
        wrong = await anon.post("/ui/signin", data={"csrf": _csrf(wrong.text), "token": webhook_token})
        assert wrong.status_code == 401

    key_file = stack.settings.data_dir / "ui-secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    async with _browser_client(stack) as viewer:
        await _signed_in(viewer, VIEWER_TOKEN)
        page = await viewer.get(f"/ui/incidents/{incident_id}")
        assert page.status_code == 200 and "awaiting_decision" in page.text
        assert 'id="approve"' not in page.text and "Awaiting an approver" in page.text
        csrf = _csrf(page.text)
        refused = await viewer.post(
            f"/ui/incidents/{incident_id}/decision", data={"csrf": csrf, "decision": "approve"}
        )
        assert refused.status_code == 403 and "viewer1 is not an approver" in refused.text

    async with _browser_client(stack) as approver:
        await _signed_in(approver, APPROVER_TOKEN)
        page = await approver.get(f"/ui/incidents/{incident_id}")
        assert 'id="approve"' in page.text
        url = f"/ui/incidents/{incident_id}/decision"
        no_csrf = await approver.post(url, data={"decision": "approve"})
        assert no_csrf.status_code == 403
        bad_csrf = await approver.post(url, data={"csrf": "x" * 43, "decision": "approve"})
        assert bad_csrf.status_code == 403
        as_json = await approver.post(url, json={"csrf": _csrf(page.text), "decision": "approve"})
        assert as_json.status_code == 400
        bad = await approver.post(url, data={"csrf": _csrf(page.text), "decision": "maybe"})
        assert bad.status_code == 400 and "decision: approve or reject" in bad.text
        assert (await stack.incident(incident_id))["decision"] is None

        # The filters narrow the list; a value outside the vocabulary is a clear 400.
        listed = await approver.get("/ui/incidents", params={"stage": "awaiting_decision"})
        assert incident_id in listed.text
        closed = await approver.get("/ui/incidents", params={"stage": "closed", "status": "firing"})
        assert closed.status_code == 200 and incident_id not in closed.text
        nothing = await approver.get("/ui/incidents", params={"service": "no-such-service-" + incident_id})
        assert "No incidents match" in nothing.text
        assert (await approver.get("/ui/incidents", params={"status": "bogus"})).status_code == 400

        # Rejecting through the form is credited to the signed-in user; a replayed form is idempotent.
        form_id = _FORM_ID.search(page.text)
        assert form_id is not None
        fields = {"csrf": _csrf(page.text), "form_id": form_id.group(1)}
        done = await approver.post(url, data={**fields, "decision": "reject", "comment": "not now"})
        assert done.status_code == 303 and done.headers["location"] == f"/ui/incidents/{incident_id}"
        again = await approver.post(url, data={**fields, "decision": "reject", "comment": "not now"})
        assert again.status_code == 303
        view = await stack.incident(incident_id)
        assert view["decision"]["by"] == "approver1" and view["decision"]["decision"] == "reject"
        late = await approver.post(url, data={"csrf": fields["csrf"], "decision": "approve"})
        assert late.status_code == 409 and "not awaiting" in late.text

        # Signing out ends the session: the old cookie's pages send to the sign-in form again.
        signout = await approver.post("/ui/signout", data={"csrf": fields["csrf"]})
        assert signout.status_code == 303
        assert (await approver.get("/ui/incidents")).status_code == 303


@pytest.mark.settings(auth=USERS)
async def test_graphs_are_served_inline_to_signed_in_readers_only(stack: Stack) -> None:
    incident_id = await _escalated(stack)
    key = (await stack.incident(incident_id))["ticket"]["key"]
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    stack.tracker.attach(key, f"{incident_id}-graph-0.png", png)
    path = f"/ui/tickets/{key}/attachments/{incident_id}-graph-0.png"
    async with _browser_client(stack) as http:
        assert (await http.get(path)).status_code == 303
        await _signed_in(http, VIEWER_TOKEN)
        resp = await http.get(path)
        assert resp.status_code == 200 and resp.content == png
        assert resp.headers["content-type"] == "image/png"
        assert "sandbox" in resp.headers["content-security-policy"]
        assert (await http.get(f"/ui/tickets/{key}/attachments/missing.png")).status_code == 404
        assert (await http.get(f"/ui/tickets/{key}/attachments/x.html")).status_code == 404
        assert (await http.get("/ui/tickets/JIRA-1/attachments/a.png")).status_code == 404
        css = await http.get("/ui/static/ui.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_https_public_url_makes_the_cookie_secure_and_a_configured_key_writes_no_file(
    tmp_path: Path,
) -> None:
    # Sign-in pages need no Temporal: the app connects lazily, so an unreachable address will do.
    settings = make_settings(
        "127.0.0.1:1",
        tmp_path / "data",
        public_url="https://selfheal.example",
        ui_secret="k" * 40,
        auth=USERS,
    )
    with ApiServer(settings) as api:
        async with httpx.AsyncClient(base_url=api.url) as http:
            form = await http.get("/ui/signin")
            assert form.status_code == 200
            assert "secure" in form.headers["set-cookie"].lower()
            # A cookie signed with another key is no session: a fresh anonymous one replaces it.
            other = URLSafeTimedSerializer(
                "another key", salt="selfheal-ui-session", signer_kwargs={"digest_method": hashlib.sha256}
            )
            http.cookies.set("selfheal_ui", other.dumps({"u": "approver1", "c": "x" * 43}), path="/ui")
            assert (await http.get("/ui/incidents")).status_code == 303
    assert not (settings.data_dir / "ui-secret").exists()


async def test_a_new_token_ends_the_sessions_the_old_one_opened(tmp_path: Path) -> None:
    settings = make_settings("127.0.0.1:1", tmp_path / "data", auth=USERS)
    with ApiServer(settings) as api:
        async with httpx.AsyncClient(base_url=api.url) as http:
            await _signed_in(http, VIEWER_TOKEN)
            signed_in = await http.get("/ui/signin")
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/incidents"
            # The admin replaces viewer1's token (same name, same roles): the open session is over.
            settings.auth.users["viewer1"] = UserSettings(
                roles=["viewer"], token_sha256=token_sha256(new_token())
            )
            assert (await http.get("/ui/signin")).status_code == 200
            assert (await http.get("/ui/incidents")).headers["location"] == "/ui/signin"
