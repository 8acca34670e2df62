"""The app under test: settings for one test, the API on a real socket, and the stack the fixtures build."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.client import Client

from connectors.base import Tracker
from devstack.stack import AsCaller
from devstack.temporal_server import free_port
from selfheal.api import create_app
from selfheal.auth import token_sha256
from selfheal.settings import Settings, load_settings

#: The people every test's settings know (`auth.users`), by name: their roles. Their API tokens are
#: `user_token(name)`; `oncall` is who `ApiServer.client()` and `Stack.http` read and decide as.
TEST_USERS: dict[str, list[str]] = {
    "oncall": ["approver"],
    "alice": ["approver"],
    "victor": ["viewer"],
    "root": ["admin"],
}
DEFAULT_USER = "oncall"


def user_token(name: str) -> str:
    """The API token of a test user (a fixed value per name; only its digest is in the settings)."""
    return f"shu_test-{name}-token"


def auth_users(users: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """`auth.users` for these people, each with `user_token(name)`."""
    return {
        name: {"roles": roles, "token_sha256": token_sha256(user_token(name))}
        for name, roles in (users or TEST_USERS).items()
    }


def make_settings(address: str, data_dir: Path, **extra: Any) -> Settings:
    """Settings for one test: its own task queue and data dir, dev mode, a fresh webhook token, and
    the `TEST_USERS` (an `auth={"users": ...}` given adds to them)."""
    base: dict[str, Any] = {
        "env": "dev",
        "data_dir": str(data_dir),
        "webhook_token": "test-token-" + uuid.uuid4().hex,
        "auth": {"users": auth_users()},
        "temporal": {
            "address": address,
            "task_queue": "tq-" + uuid.uuid4().hex[:12],
            "rpc_timeout_seconds": 5,
        },
        "incident": {"activity_timeout_seconds": 10},
        # The spine's tests use alerts no playbook knows; playbook tests opt in to the library.
        "remediation": {"include_library": False},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged = {**base[key], **value}
            if key == "auth" and "users" in value:
                merged["users"] = {**base["auth"]["users"], **value["users"]}
            base[key] = merged
        else:
            base[key] = value
    return load_settings(None, **base)


class ApiServer:
    """The real ASGI app under uvicorn on a free 127.0.0.1 port, in a thread with its own loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_config=None, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def webhook_token(self) -> str:
        assert self.settings.webhook_token is not None
        return self.settings.webhook_token.get_secret_value()

    def client(self, token: str | None = None, *, user: str = DEFAULT_USER) -> httpx.AsyncClient:
        """A client sending `token` on every request; by default, the webhook token on alerts and
        `user`'s API token elsewhere (`AsCaller`)."""
        if token is not None:
            return httpx.AsyncClient(
                base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
        return httpx.AsyncClient(
            base_url=self.url, auth=AsCaller(self.webhook_token, user_token(user)), timeout=60
        )


@dataclass
class Stack:
    settings: Settings
    client: Client
    api: ApiServer
    tracker: Tracker
    http: httpx.AsyncClient

    async def post_alerts(self, payload: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/api/v1/alerts", json=payload)

    async def incident(self, incident_id: str) -> dict[str, Any]:
        resp = await self.http.get(f"/api/v1/incidents/{incident_id}")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def wait_for(self, incident_id: str, pred: Any, timeout: float = 30) -> dict[str, Any]:
        return await wait_for_incident(self.http, incident_id, pred, timeout)


async def wait_for_incident(
    http: httpx.AsyncClient, incident_id: str, pred: Any, timeout: float = 30
) -> dict[str, Any]:
    """Poll the public API until `pred(incident)` holds (a condition with a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await http.get(f"/api/v1/incidents/{incident_id}")
        if resp.status_code == 200:
            last = resp.json()
            if pred(last):
                return last
        await asyncio.sleep(0.1)
    timeline = [(e["kind"], e["message"]) for e in last.get("timeline", [])]
    raise AssertionError(
        f"condition not met within {timeout}s; stage {last.get('stage')!r}, timeline {timeline}"
    )
