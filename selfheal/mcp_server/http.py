"""The tools over streamable HTTP under the API (`/mcp`), for agents that reach selfheal remotely.

Each request is authenticated exactly as the rest of the API (the `authenticate` it is given: a
person's API token or OIDC token, viewer or more), and each tool call is made to the API itself,
in-process, with that request's own `Authorization` header and peer address: the API then applies
its rules (approvers decide, refusals recorded, audit with the caller's address) to that person.
Stateless (no MCP session outlives a request), so nothing carries one person's identity into
another's call.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from selfheal.mcp_server.stdio import TIMEOUT_SECONDS
from selfheal.mcp_server.tools import Ctx, SelfhealApi, build_server


class McpHttp:
    """An ASGI endpoint: 401/403 as the API answers them, else the MCP streamable HTTP transport.

    `api` is the API app the tools call back into; `run()` belongs in its lifespan."""

    def __init__(self, api: ASGIApp, authenticate: Callable[[Request], Awaitable[Any]]) -> None:
        self.api = api
        self.authenticate = authenticate
        self.server = build_server(self._api_for)
        # Bearer tokens, not cookies, authenticate here: a DNS-rebinding page has none to send.
        self.server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    def run(self) -> AbstractAsyncContextManager[None]:
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self.authenticate(Request(scope, receive))
        except HTTPException as err:
            answer = JSONResponse({"error": err.detail}, status_code=err.status_code, headers=err.headers)
            await answer(scope, receive, send)
            return
        await self.server.session_manager.handle_request(scope, receive, send)

    @asynccontextmanager
    async def _api_for(self, ctx: Ctx) -> AsyncIterator[SelfhealApi]:
        request = ctx.request_context.request
        if not isinstance(request, Request):
            raise ToolError("no HTTP request behind this call")
        peer = (request.client.host, request.client.port) if request.client else ("", 0)
        transport = httpx.ASGITransport(app=self.api, client=peer, raise_app_exceptions=False)
        headers = {"Authorization": request.headers.get("authorization", "")}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://selfheal", headers=headers, timeout=TIMEOUT_SECONDS
        ) as http:
            yield SelfhealApi(http, "this server")
