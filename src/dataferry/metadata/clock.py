"""The clock every metadata API reads, injectable so tests can move time without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time as a timezone-aware datetime."""


def utcnow() -> datetime:
    """The current time in UTC (aware): what leases and run timestamps are measured in."""
    return datetime.now(UTC)
