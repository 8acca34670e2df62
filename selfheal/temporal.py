"""Connecting to Temporal and registering the search attributes selfheal indexes."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from selfheal import identity
from selfheal.settings import TemporalSettings


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
    for key in identity.ALL_SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register missing search attributes (a cluster where we may); returns the names added."""
    wanted = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in identity.ALL_SEARCH_ATTRIBUTES}
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
