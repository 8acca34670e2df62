"""Temporal unreachable: the webhook answers 503 (Alertmanager retries), then succeeds; nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from devstack.temporal_server import TemporalDevServer, free_port
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings
from tests.support.payloads import am025, unique_group


async def test_503_while_temporal_is_down_then_recorded(tmp_path: Path) -> None:
    port = free_port()
    server = TemporalDevServer(tmp_path / "temporal.db", port=port, ui_port=None, log_file=tmp_path / "t.log")
    settings = make_settings(f"127.0.0.1:{port}", tmp_path / "data", temporal={"rpc_timeout_seconds": 2})
    payload = am025("firing", unique_group())
    with ApiServer(settings) as api:
        async with api.client() as http:
            down = await http.post("/api/v1/alerts", json=payload)
            assert down.status_code == 503, down.text
            assert "unreachable" in down.json()["error"]
            assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/healthz")).status_code == 200

            await asyncio.to_thread(server.start)
            try:
                # Alertmanager retries: the same notification now lands.
                up = None
                for _ in range(50):
                    up = await http.post("/api/v1/alerts", json=payload)
                    if up.status_code != 503:
                        break
                    await asyncio.sleep(0.2)
                assert up is not None and up.status_code == 202, up.text if up else None
                incident_id = up.json()["incident_id"]

                # A worker started afterwards picks the recorded notification up.
                client = await connect(settings.temporal)
                tracker = LocalTracker(settings.local_db_path)
                async with build_worker(client, settings, tracker):
                    for _ in range(100):
                        view = (await http.get(f"/api/v1/incidents/{incident_id}")).json()
                        if view.get("stage") == "awaiting_decision":
                            break
                        await asyncio.sleep(0.1)
                    assert view["stage"] == "awaiting_decision"
                    assert len(view["alerts"]) == 2
                    assert tracker.count() == 1
                assert (await http.get("/readyz")).status_code == 200
            finally:
                await asyncio.to_thread(server.stop)
