"""Fixtures for metadata tests: a fresh metadata DB on SQLite and on PostgreSQL, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataferry.metadata import Metadata, open_metadata
from tests.conftest import require_service
from tests.connectors.pg_helpers import temporary_database as postgres_database

BACKENDS = ["sqlite", "postgres"]


class FakeClock:
    """A clock that stands still until a test moves it: leases expire without sleeping."""

    def __init__(self, start: datetime = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty metadata database, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'ferry.db'}"
        return
    require_service("postgres")
    with postgres_database() as pg_url:
        yield pg_url


@pytest.fixture
def db(url: str) -> Iterator[Metadata]:
    """An open, migrated metadata database."""
    with open_metadata(url) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
