"""Connecting to Temporal and registering the search attributes selfheal indexes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from models import ids
from models.ids import TASK_QUEUE
from models.settings import Section


class TemporalSettings(Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = TASK_QUEUE
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    api_key: SecretStr | None = None
    ui_url: str = "http://127.0.0.1:8233"
    rpc_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    #: Threads the worker runs blocking activity work on (connector calls, git, each verify's
    #: whole hold window). As many as Temporal's default activity slots (100), so no activity
    #: waits for a thread; asyncio's default (cores + 4) made verifications queue.
    worker_threads: int = Field(default=100, ge=1, le=1000)
    #: Workflows the worker keeps in memory. An incident and its remediation child are two, so
    #: Temporal's default (1000) evicts during a 500-incident storm, and an evicted workflow is
    #: replayed from its whole history on its next task.
    max_cached_workflows: int = Field(default=2000, ge=0)
    #: How long a cached workflow's next task waits for this worker before any worker may take
    #: it (and replay it from scratch). Temporal's 10 s default was shorter than a busy worker's
    #: queue, so most tasks of a storm were replayed; a crashed worker delays its workflows this long.
    sticky_timeout_seconds: float = Field(default=30, gt=0, le=600)


async def connect(cfg: TemporalSettings, *, lazy: bool = False) -> Client:
    """A client with the pydantic converter; `lazy` lets the API start while Temporal is down."""
    tls: TLSConfig | bool = False
    if cfg.tls or cfg.tls_cert or cfg.tls_ca:
        tls = TLSConfig(
            server_root_ca_cert=cfg.tls_ca.read_bytes() if cfg.tls_ca else None,
            client_cert=cfg.tls_cert.read_bytes() if cfg.tls_cert else None,
            client_private_key=cfg.tls_key.read_bytes() if cfg.tls_key else None,
        )
    return await Client.connect(
        cfg.address,
        namespace=cfg.namespace,
        tls=tls,
        api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
        data_converter=pydantic_data_converter,
        lazy=lazy,
    )


def dev_server_search_attribute_args() -> list[str]:
    """`temporal server start-dev` flags that pre-register our search attributes."""
    args: list[str] = []
    for key in ids.ALL_SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register missing search attributes (a cluster where we may); returns the names added."""
    wanted = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in ids.ALL_SEARCH_ATTRIBUTES}
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace), timeout=timedelta(seconds=10)
        )
        missing = {k: v for k, v in wanted.items() if k not in existing.custom_attributes}
    except RPCError as err:
        # The time-skipping test server implements add but not list.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = wanted
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing),
            timeout=timedelta(seconds=10),
        )
    return sorted(missing)
