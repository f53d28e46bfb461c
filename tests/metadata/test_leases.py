"""Job leases: one holder at a time, across threads of time (a fake clock) and processes."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from typing import Any

from dataferry.metadata import Lease, Leases, Metadata
from tests.conftest import FakeClock
from tests.metadata.racer import race_for_leases

ROUNDS = 50


def test_a_held_lease_waits_for_expiry_or_release(db: Metadata, clock: FakeClock) -> None:
    leases = Leases(db, now=clock)
    job = "ingest:shop.orders"
    assert leases.acquire(job, "a", 60, run_id=7)
    assert leases.current(job) == Lease(job, "a", 7, clock() + timedelta(seconds=60))
    assert not leases.acquire(job, "b", 60)

    clock.advance(50)
    assert leases.renew(job, "a", 60)  # now held until 110 s
    assert not leases.renew(job, "b", 60)
    clock.advance(50)
    assert not leases.acquire(job, "b", 60)  # would have expired without the renewal
    assert leases.acquire(job, "a", 60, run_id=8)  # taking it again extends it
    current = leases.current(job)
    assert current is not None and current.run_id == 8

    clock.advance(61)
    assert leases.current(job) is None
    assert leases.acquire(job, "b", 30)  # expired: free for anyone
    assert not leases.renew(job, "a", 60)  # a lost it
    assert not leases.release(job, "a")  # and cannot free someone else's
    assert not leases.acquire(job, "a", 60)

    assert leases.release(job, "b")
    assert leases.current(job) is None
    assert leases.acquire(job, "a", 60)


def test_leases_on_different_jobs_are_independent(db: Metadata, clock: FakeClock) -> None:
    leases = Leases(db, now=clock)
    assert leases.acquire("ingest:shop.orders", "a", 60)
    assert leases.acquire("ingest:shop.stock", "b", 60)
    assert not leases.acquire("ingest:shop.stock", "a", 60)


def test_an_expired_lease_nobody_took_can_still_be_renewed(db: Metadata,
                                                            clock: FakeClock) -> None:
    leases = Leases(db, now=clock)
    assert leases.acquire("j", "a", 10)
    clock.advance(20)
    assert leases.renew("j", "a", 10)
    assert not leases.acquire("j", "b", 10)


def test_two_processes_never_both_win_a_lease(url: str, db: Metadata) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results: Any = spawn.Queue()
    racers = [spawn.Process(target=race_for_leases, args=(url, name, ROUNDS, barrier, results))
              for name in ("a", "b")]
    for racer in racers:
        racer.start()
    won = dict(results.get(timeout=300) for _ in racers)
    for racer in racers:
        racer.join(timeout=60)
    for name, outcome in won.items():
        assert isinstance(outcome, dict), f"racer {name} failed:\n{outcome}"
    for lease in ("new", "shared"):
        a, b = set(won["a"][lease]), set(won["b"][lease])
        assert not a & b, f"both won {lease} in rounds {sorted(a & b)}"
        assert a | b == set(range(ROUNDS)), f"nobody won {lease} in {set(range(ROUNDS)) - a - b}"
