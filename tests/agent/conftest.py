"""Fixtures of the agent tests: an empty metadata DB (SQLite, PostgreSQL) with a fake clock, and
``private_network``, a network namespace with a PostgreSQL only processes inside it reach
(see tests/agent/netns.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataferry.metadata import Metadata, open_metadata
from tests.agent.netns import NamespacesUnavailable, PrivateNetwork, open_private_network
from tests.conftest import FakeClock


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Metadata]:
    """An empty metadata DB: SQLite, then PostgreSQL (the queue's conditional updates and
    the registry's must hold on both)."""
    if request.param == "sqlite":
        with open_metadata(f"sqlite:///{tmp_path / 'ferry.db'}") as opened:
            yield opened
        return
    from tests.connectors.pg_helpers import temporary_database

    with temporary_database() as url, open_metadata(url) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def private_network() -> Iterator[PrivateNetwork]:
    """A private network for the whole session (removed at its end, also on failure or
    Ctrl-C). Skips where namespaces are unavailable; fails instead under
    FERRY_REQUIRE_SERVICES=1, as CI runs."""
    try:
        network = open_private_network()
    except NamespacesUnavailable as reason:
        message = f"no private network for the agent's tests: {reason}"
        if os.environ.get("FERRY_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with network:
        yield network
