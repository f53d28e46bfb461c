"""Fixtures for metadata tests: the URL of a fresh metadata DB on SQLite and on PostgreSQL
(``db`` and ``clock`` are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.connectors.pg_helpers import temporary_database as postgres_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty metadata database, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'ferry.db'}"
        return
    require_service("postgres")
    with postgres_database() as pg_url:
        yield pg_url

