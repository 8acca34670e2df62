"""Fixtures the end-to-end modules share; the helpers they are built from are in `tests.support`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pool import PoolTarget, pool_prometheus


@pytest.fixture(scope="module")
def pool_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PoolTarget]]:
    """One Prometheus per module scraping the pool scenario's target (`tests.support.pool`)."""
    with pool_prometheus(tmp_path_factory.mktemp("prom")) as served:
        yield served
