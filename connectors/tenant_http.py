"""The HTTP client shape shared by Grafana-stack read APIs (Loki, Tempo, Jaeger's query service).

They take a base URL, optional extra headers and a multi-tenant org id sent as `X-Scope-OrgID`;
one place builds that client so a header or timeout rule changes once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import httpx


class TenantHttpClient:
    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] | None = None,
        tenant: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        all_headers = dict(headers or {})
        if tenant:
            all_headers["X-Scope-OrgID"] = tenant
        self._client = httpx.Client(base_url=self.url, timeout=timeout, headers=all_headers)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
