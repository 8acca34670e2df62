"""`selfheal mcp`: the tools over stdio for a coding agent on a laptop, acting through the API at
`SELFHEAL_URL` as the person whose API token is `SELFHEAL_TOKEN`. Stdout carries the protocol
only; anything else goes to stderr."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from selfheal.mcp_server.tools import Ctx, SelfhealApi, build_server

#: A decision waits until the incident accepted it (a Temporal update): allow for a slow worker.
TIMEOUT_SECONDS = 60


async def serve_stdio(url: str, token: str) -> None:
    """Serve until the client closes stdin."""
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "selfheal-mcp"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=TIMEOUT_SECONDS) as http:
        api = SelfhealApi(http, url)

        @asynccontextmanager
        async def api_for(_: Ctx) -> AsyncIterator[SelfhealApi]:
            yield api

        await build_server(api_for).run_stdio_async()
