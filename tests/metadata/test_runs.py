"""Run history as the runner, the scheduler and `ferry runs` use it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.metadata import (
    LatestRuns,
    Metadata,
    MetadataError,
    RunHistory,
    VersionRef,
    worker_name,
)
from tests.conftest import FakeClock


def test_a_run_round_trips_with_utc_times_and_versions(db: Metadata, clock: FakeClock) -> None:
    # The clock may be in any zone; what comes back is the same instant, in UTC.
    clock.at = datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    runs = RunHistory(db, now=clock)
    run_id = runs.start_run("deliver:team.consumer:orders", "deliver", "freshness", 2,
                            worker_name(), lease_seconds=60)
    runs.log(run_id, "info", "reading shop.orders version 7")
    clock.advance(90)
    runs.log(run_id, "warning", "3 rows masked")
    assert runs.finish_run(run_id, "succeeded", rows_in=1_000, rows_out=997,
                           versions_read=[VersionRef("shop.orders", 7),
                                          VersionRef("shop.customers", 3)],
                           versions_written=[VersionRef("team.consumer", 12)])

    run = runs.get_run(run_id)
    assert run is not None
    assert run.started_at == datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert run.started_at.tzinfo == UTC and run.ended_at is not None and run.ended_at.tzinfo == UTC
    assert run.seconds == 90
    assert (run.job_id, run.job_kind, run.trigger, run.attempt) == (
        "deliver:team.consumer:orders", "deliver", "freshness", 2)
    assert (run.status, run.rows_in, run.rows_out, run.error) == ("succeeded", 1_000, 997, None)
    assert run.versions_read == (VersionRef("shop.orders", 7), VersionRef("shop.customers", 3))
    assert run.versions_written == (VersionRef("team.consumer", 12),)
    assert run.worker == worker_name() and run.lease_expires_at is None
    assert [(line.level, line.message) for line in run.log] == [
        ("info", "reading shop.orders version 7"), ("warning", "3 rows masked")]
    assert run.log[1].at - run.log[0].at == timedelta(seconds=90)
    assert runs.get_run(run_id + 1) is None


def test_a_failed_run_keeps_its_error(db: Metadata) -> None:
    runs = RunHistory(db)
    run_id = runs.start_run("ingest:shop.orders", "ingest", "schedule", 1, "h:1", 60)
    runs.finish_run(run_id, "failed", error="SourceError: connection refused (shop.db)")
    run = runs.get_run(run_id)
    assert run is not None and run.status == "failed"
    assert run.error == "SourceError: connection refused (shop.db)"


def test_list_runs_newest_first_with_paging_and_filters(db: Metadata, clock: FakeClock) -> None:
    runs = RunHistory(db, now=clock)
    ids = []
    for number in range(7):
        job = "ingest:shop.orders" if number % 2 == 0 else "transform:shop.revenue"
        run_id = runs.start_run(job, job.split(":")[0], "schedule", 1, "h:1", 60)  # type: ignore[arg-type]
        runs.finish_run(run_id, "failed" if number in (1, 4) else "succeeded")
        ids.append(run_id)
        clock.advance(60)
    newest_first = ids[::-1]

    assert [r.id for r in runs.list_runs()] == newest_first
    assert [r.id for r in runs.list_runs(limit=3)] == newest_first[:3]
    assert [r.id for r in runs.list_runs(limit=3, offset=3)] == newest_first[3:6]
    assert [r.id for r in runs.list_runs(limit=3, offset=6)] == newest_first[6:]
    assert [r.id for r in runs.list_runs(failed_only=True)] == [ids[4], ids[1]]
    assert [r.id for r in runs.list_runs(job_id="ingest:shop.orders")] == [
        ids[6], ids[4], ids[2], ids[0]]
    assert [r.id for r in runs.list_runs(job_id="ingest:shop.orders", failed_only=True)] == [ids[4]]
    assert runs.list_runs(job_id="deliver:nobody:nothing") == []


def test_a_run_whose_heartbeat_stopped_is_found_and_abandoned_once(
        db: Metadata, clock: FakeClock) -> None:
    runs = RunHistory(db, now=clock)
    alive = runs.start_run("ingest:shop.orders", "ingest", "schedule", 1, "alive:1", 60)
    killed = runs.start_run("ingest:shop.stock", "ingest", "schedule", 1, "killed:2", 60)
    finished = runs.start_run("ingest:shop.items", "ingest", "schedule", 1, "done:3", 60)
    runs.finish_run(finished, "unchanged")

    clock.advance(45)
    assert runs.heartbeat(alive, 60)  # the killed process sends no more heartbeats
    assert runs.expired_runs() == []
    clock.advance(30)
    assert [r.id for r in runs.expired_runs()] == [killed]
    assert [r.id for r in runs.expired_runs(clock() + timedelta(hours=1))] == [alive, killed]

    assert runs.mark_abandoned(killed)
    assert not runs.mark_abandoned(killed)  # a second scheduler sweeping finds it handled
    assert not runs.mark_abandoned(alive)  # its lease has not expired
    assert runs.expired_runs() == []
    run = runs.get_run(killed)
    assert run is not None and run.status == "failed" and run.ended_at == clock()
    assert run.error is not None and "killed:2" in run.error and "stopped heartbeating" in run.error
    assert run.log[-1].level == "error"

    # the killed worker was only paused: it learns its run was given up
    assert not runs.heartbeat(killed, 60)
    assert not runs.finish_run(killed, "succeeded", rows_out=5)
    run = runs.get_run(killed)
    assert run is not None and run.status == "failed" and run.rows_out == 0


def test_bad_input_is_refused_clearly(db: Metadata) -> None:
    runs = RunHistory(db)
    with pytest.raises(ValueError, match="ingest, transform, deliver"):
        runs.start_run("x", "copy", "manual", 1, "h:1", 60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry"):
        runs.start_run("x", "ingest", "cron", 1, "h:1", 60)  # type: ignore[arg-type]
    run_id = runs.start_run("ingest:x", "ingest", "manual", 1, "h:1", 60)
    with pytest.raises(ValueError, match="not a finished status"):
        runs.finish_run(run_id, "running")
    with pytest.raises(MetadataError, match="no such run"):
        runs.log(run_id + 100, "info", "lost")
    # a naive time's zone would be a guess
    naive = RunHistory(db, now=lambda: datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        naive.start_run("ingest:x", "ingest", "manual", 1, "h:1", 60)


_OPS = st.lists(st.one_of(
    st.tuples(st.just("start"), st.integers(0, 3)),  # a run of job N starts
    st.tuples(st.just("finish"), st.integers(0, 20),  # the Nth running run ends
              st.sampled_from(["succeeded", "unchanged", "failed"])),
    st.tuples(st.just("abandon"), st.integers(0, 20)),  # its worker dies; a sweep fails it
    st.tuples(st.just("refresh"), st.just(0)),
), max_size=25)
_EXAMPLES = itertools.count()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_latest_runs_follows_the_history_as_last_run_reads_it(db: Metadata,
                                                             ops: list[tuple[Any, ...]]) -> None:
    # The scheduler's per-tick view (two grouped queries, then only what changed) must
    # say what asking `last_run` job by job says, whatever happened in between.
    runs = RunHistory(db)
    example = next(_EXAMPLES)  # the database is shared by the examples: own job names
    jobs = [f"ingest:t{example}.d{n}" for n in range(4)]
    tracker = LatestRuns(runs, ("succeeded", "unchanged"))
    running: list[int] = []

    def agrees(view: LatestRuns) -> None:
        view.refresh()
        for job in jobs:
            assert view.last(job) == runs.last_run(job), job
            assert view.last_counted(job) == runs.last_run(job, ("succeeded", "unchanged")), job

    for op in ops:
        if op[0] == "start":
            running.append(runs.start_run(jobs[op[1]], "ingest", "schedule", 1, "h:1", 600))
        elif op[0] in ("finish", "abandon") and running:
            run_id = running.pop(op[1] % len(running))
            if op[0] == "finish":
                runs.finish_run(run_id, op[2])
            else:
                runs.heartbeat(run_id, -1)  # the lease ran out
                assert runs.mark_abandoned(run_id)
        elif op[0] == "refresh":
            agrees(tracker)
    agrees(tracker)
    agrees(LatestRuns(runs, ("succeeded", "unchanged")))  # a new view reads it all at once


def test_held_versions_are_last_deliveries_and_live_readers(db: Metadata,
                                                            clock: FakeClock) -> None:
    """What ``ferry gc`` keeps: each delivery's last successful version, and what running
    runs with a live lease read; not a dead worker's reading, nor a failed delivery's."""
    runs = RunHistory(db, now=clock)
    job, other = "deliver:bi.wh:orders", "deliver:bi.old:orders"

    def delivered(job_id: str, version: int, status: str = "succeeded") -> None:
        run_id = runs.start_run(job_id, "deliver", "manual", 1, worker_name(), 60)
        runs.finish_run(run_id, status, versions_read=[VersionRef("shop.orders", version)])

    delivered(job, 3)
    delivered(job, 5)
    delivered(job, 6, "failed")  # its sink did not get 6: it still has 5
    delivered(other, 2)
    delivered(other, 9, "unchanged")
    reading = runs.start_run(job, "deliver", "manual", 1, worker_name(), 60)
    assert runs.record_reading(reading, [VersionRef("shop.orders", 4),
                                         VersionRef("shop.orders", 7),
                                         VersionRef("shop.customers", 1)])
    held = [(h.version, h.job_id) for h in runs.held_versions("shop.orders")]
    assert held == [(4, job), (5, job), (7, job), (9, other)]
    assert "running" in runs.held_versions("shop.orders")[0].why
    assert [h.version for h in runs.held_versions("shop.orders", jobs={job})] == [4, 5, 7]

    clock.advance(61)  # the reader's lease ran out: its worker is gone
    assert [h.version for h in runs.held_versions("shop.orders", jobs={job})] == [5]
    assert not runs.record_reading(reading + 1, [])  # no such running run
