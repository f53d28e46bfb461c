"""Fixtures of the agent's tests: ``private_network``, a network namespace with a
PostgreSQL only processes inside it reach (see tests/agent/netns.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.agent.netns import NamespacesUnavailable, PrivateNetwork, open_private_network


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
