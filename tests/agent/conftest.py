"""Fixtures of the agent tests: an empty metadata DB (SQLite) with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataferry.metadata import Metadata, open_metadata
from tests.conftest import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Metadata]:
    with open_metadata(f"sqlite:///{tmp_path / 'ferry.db'}") as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
