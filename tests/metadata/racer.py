"""Code that runs in child processes for the concurrency tests (spawned: no shared state)."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from dataferry.metadata import Leases, open_metadata

BASE = datetime(2025, 3, 1, tzinfo=UTC)


def race_for_leases(url: str, holder: str, rounds: int, barrier: Barrier,
                    results: Queue[tuple[str, Any]]) -> None:
    """Each round, after meeting the other racer, try to take two leases.

    ``new:<round>`` has never been held (the INSERT path); ``shared`` was taken in the
    previous round and has expired since (the ON CONFLICT DO UPDATE path). Each round's
    clock is an hour after the previous one's. Reports the rounds won for each lease.
    """
    try:
        with open_metadata(url) as db:
            round_at = BASE
            leases = Leases(db, now=lambda: round_at)
            won: dict[str, list[int]] = {"new": [], "shared": []}
            for number in range(rounds):
                round_at = BASE + timedelta(hours=number)
                barrier.wait(timeout=60)
                if leases.acquire(f"new:{number}", holder, 60):
                    won["new"].append(number)
                if leases.acquire("shared", holder, 60):
                    won["shared"].append(number)
        results.put((holder, won))
    except BaseException:
        barrier.abort()
        results.put((holder, traceback.format_exc()))


def open_at_once(url: str, barrier: Barrier, results: Queue[tuple[str, Any]]) -> None:
    """Open (and so migrate) the same fresh database as another process, at the same time."""
    try:
        barrier.wait(timeout=60)
        with open_metadata(url):
            pass
        results.put(("ok", None))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))
