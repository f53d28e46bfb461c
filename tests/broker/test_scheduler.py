"""The scheduler (`ferry up`): freshness, on_change, cron, staleness, dead runs, two schedulers."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataferry.broker.scheduler import Scheduler
from dataferry.engine.context import RunContext
from dataferry.metadata import Outbox, RunHistory, Staleness, open_metadata
from dataferry.model.load import load_model
from tests.broker.small_model import JOBS, make_shop
from tests.connectors.pg_helpers import temporary_database


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def context_of(root: Path) -> RunContext:
    return RunContext.from_loaded(load_model(root))


def scheduler(root: Path, clock: Clock) -> Scheduler:
    return Scheduler(context_of(root), workers=2, now=clock)


def ran(root: Path) -> list[tuple[str, str, str]]:
    """(job, trigger, status) of every recorded run, oldest first."""
    with open_metadata(f"sqlite:///{root / '.ferry' / 'ferry.db'}") as db:
        runs = RunHistory(db).list_runs(limit=1000)
    return [(r.job_id, r.trigger, r.status) for r in reversed(runs)]


def mirror(root: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(root / "out" / "mirror.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Path]:
    yield make_shop(tmp_path / "model")


def test_a_pass_runs_the_pipeline_once_then_nothing_is_due(shop: Path) -> None:
    clock = Clock()
    first = scheduler(shop, clock)
    first.run_until_idle()
    first.close()
    assert sorted(ran(shop)) == sorted([
        ("ingest:shop.orders", "freshness", "succeeded"),
        ("transform:shop.totals", "on_change", "succeeded"),
        ("deliver:shop.mirror:orders", "on_change", "succeeded"),
        ("deliver:shop.mirror:totals", "on_change", "succeeded")])
    assert {job for job, _, _ in ran(shop)} == set(JOBS)
    assert mirror(shop, "select count(*) from orders") == [(50,)]
    clock.advance(hours=1)
    again = scheduler(shop, clock)
    assert again.tick().started == []  # fresh enough, inputs unchanged
    again.close()


def test_freshness_reruns_the_ingest_and_changes_flow_downstream(shop: Path) -> None:
    clock = Clock()
    runner = scheduler(shop, clock)
    runner.run_until_idle()
    clock.advance(hours=11)
    assert runner.tick().started == []  # the default freshness 1d: ingest every 12h
    clock.advance(hours=2)
    runner.run_until_idle()
    assert ran(shop)[-1] == ("ingest:shop.orders", "freshness", "unchanged")  # no change
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("update orders set amount = '99.00', "
                   "updated_at = '2026-02-01T00:00:00+00:00' where id = 7")
    clock.advance(hours=13)
    runner.run_until_idle()
    runner.close()
    last = ran(shop)[-4:]
    assert last[0] == ("ingest:shop.orders", "freshness", "succeeded")
    assert {(job, trigger) for job, trigger, _ in last[1:]} == {
        ("transform:shop.totals", "on_change"), ("deliver:shop.mirror:orders", "on_change"),
        ("deliver:shop.mirror:totals", "on_change")}
    assert mirror(shop, "select amount from orders where id = 7")[0][0] == 99


def test_cron_schedules_fire_at_their_time(shop: Path) -> None:
    model = shop / "teams" / "shop" / "shop.yaml"
    model.write_text(model.read_text().replace(
        "        capture: incremental", '        schedule: "0 * * * *"\n        capture: incremental'))
    clock = Clock()  # 10:30
    runner = scheduler(shop, clock)
    clock.advance(minutes=29)
    assert runner.tick().started == []
    clock.advance(minutes=1)  # 11:00
    assert runner.tick().started == [("ingest:shop.orders", "schedule")]
    runner.wait()
    clock.advance(minutes=30)
    assert ("ingest:shop.orders", "schedule") not in runner.tick().started
    runner.close()


def test_a_delivery_whose_data_is_too_old_is_marked_stale(shop: Path) -> None:
    clock = Clock()
    runner = scheduler(shop, clock)
    runner.run_until_idle()
    shutil.move(shop / "shop.db", shop / "away.db")  # the source is gone
    clock.advance(hours=25)
    runner.run_until_idle()
    assert ran(shop)[-1][0] == "ingest:shop.orders" and ran(shop)[-1][2] == "failed"
    stale = Staleness(runner.context.metadata).stale()
    assert {s.job_id for s in stale} == {"deliver:shop.mirror:orders",
                                         "deliver:shop.mirror:totals"}
    assert "older than the freshness" in stale[0].reason
    # Each went stale once: one event each, about the dataset that consumer gets.
    announced = [e for e in Outbox(runner.context.metadata).after(0)
                 if e.type == "io.dataferry.dataset.stale"]
    assert sorted((e.subject, e.source) for e in announced) == [
        ("deliver:shop.mirror:orders", "/datasets/shop.orders"),
        ("deliver:shop.mirror:totals", "/datasets/shop.totals")]
    failed = [e for e in Outbox(runner.context.metadata).after(0)
              if e.type == "io.dataferry.run.failed"]
    assert [e.subject for e in failed] == ["ingest:shop.orders"]
    clock.advance(seconds=30)
    assert runner.tick().started == []  # a failed job waits before it runs again
    shutil.move(shop / "away.db", shop / "shop.db")
    clock.advance(minutes=2)
    runner.run_until_idle()
    report = runner.tick()
    assert Staleness(runner.context.metadata).stale() == []
    assert report.started == []
    runner.close()


def test_a_killed_run_is_retried_without_duplicates(shop: Path) -> None:
    env = {**os.environ, "FERRY_CRASH_AT": "before-signature"}
    killed = subprocess.run([sys.executable, "-m", "dataferry.cli", "up", "--once",
                             "--model", str(shop)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert ran(shop) == [("ingest:shop.orders", "freshness", "running")]
    clock = Clock()
    clock.at = datetime.now(UTC) + timedelta(hours=1)  # the dead run's lease has expired
    runner = scheduler(shop, clock)
    report = runner.tick()
    assert report.abandoned == ["ingest:shop.orders"]
    assert report.started == [("ingest:shop.orders", "retry")]
    runner.run_until_idle()
    runner.close()
    history = ran(shop)
    assert history[0] == ("ingest:shop.orders", "freshness", "failed")  # abandoned
    assert history[1] == ("ingest:shop.orders", "retry", "succeeded")
    dataset = runner.context.store.dataset("shop.orders")
    assert dataset.version_numbers() == [1]
    assert mirror(shop, "select count(*), count(distinct id) from orders") == [(50, 50)]


def _dead_run(runner: Scheduler, clock: Clock, job: str = "ingest:shop.orders") -> int:
    """A run of ``job`` by a process that died, found dead (marked abandoned) by another
    scheduler, which then died too (it never ran the retry)."""
    history = RunHistory(runner.context.metadata, now=clock)
    run_id = history.start_run(job, "ingest", "freshness", 1, "gone:1", lease_seconds=60)
    clock.advance(minutes=2)
    assert history.mark_abandoned(run_id)
    return run_id


def test_a_retry_survives_the_scheduler_that_found_the_dead_run(shop: Path) -> None:
    clock = Clock()
    first = scheduler(shop, clock)
    first.run_until_idle()
    first.close()
    _dead_run(first, clock)
    # A scheduler that did not mark it (fresh memory) retries it at once, rather than
    # waiting the minute a failed job waits.
    other = scheduler(shop, clock)
    report = other.tick()
    assert report.started == [("ingest:shop.orders", "retry")]
    other.wait()
    assert ran(shop)[-1] == ("ingest:shop.orders", "retry", "unchanged")
    assert other.tick().started == []  # retried once: nothing is due any more
    other.close()


def test_a_retry_is_not_run_again_where_another_scheduler_ran_it(shop: Path) -> None:
    clock = Clock()
    one, two = scheduler(shop, clock), scheduler(shop, clock)
    one.run_until_idle()
    _dead_run(one, clock)
    job = one.graph.jobs["ingest:shop.orders"]
    assert one.due(job, clock()) == "retry"  # what one's tick decided...
    assert two.tick().started == [("ingest:shop.orders", "retry")]
    two.wait()  # ...but two ran it first
    before = ran(shop)
    assert one._work(job, "retry", one.context) is None  # re-checked under the lease
    assert ran(shop) == before
    one.close()
    two.close()


def test_a_job_whose_run_is_alive_elsewhere_is_not_due(shop: Path) -> None:
    """The run's row says a job is taken, even when the job's lease (taken a moment before
    the run started) has just ended."""
    clock = Clock()
    first = scheduler(shop, clock)
    first.run_until_idle()
    first.close()
    clock.advance(days=1)  # the ingest is due by freshness
    runner = scheduler(shop, clock)
    history = RunHistory(runner.context.metadata, now=clock)
    history.start_run("ingest:shop.orders", "ingest", "freshness", 1, "elsewhere:1",
                      lease_seconds=60)
    job = runner.graph.jobs["ingest:shop.orders"]
    assert runner.tick().started == []
    assert runner._work(job, "freshness", runner.context) is None  # no job lease held
    clock.advance(seconds=61)  # its process stopped heartbeating: found dead, retried
    report = runner.tick()
    assert report.abandoned == ["ingest:shop.orders"]
    assert report.started == [("ingest:shop.orders", "retry")]
    runner.wait()
    runner.close()
    assert ran(shop)[-2:] == [("ingest:shop.orders", "freshness", "failed"),
                              ("ingest:shop.orders", "retry", "unchanged")]


def test_a_job_that_cannot_be_decided_does_not_stop_the_scheduler(
        shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that fails to answer about one dataset (in the chaos test: a version a
    slow writer was completing) is reported, and the scheduler goes on."""
    from dataferry.errors import StoreError
    from dataferry.store.store import Store

    clock = Clock()
    runner = scheduler(shop, clock)
    runner.run_until_idle()
    runner.close()
    clock.advance(days=1)
    runner = scheduler(shop, clock)
    real = Store.dataset

    def failing(store: Store, ref: str, **options: Any) -> Any:
        if ref == "shop.totals":
            raise StoreError("shop.totals version 1: cannot be read", public=True)
        return real(store, ref, **options)

    monkeypatch.setattr(Store, "dataset", failing)
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("update orders set amount = '7.00', "
                   "updated_at = '2026-02-01T00:00:00+00:00' where id = 3")
    report = runner.tick()
    assert report.started == [("ingest:shop.orders", "freshness")]
    runner.wait()
    report = runner.tick()  # the transform's own output cannot be read: it is skipped
    assert ("transform:shop.totals", "shop.totals version 1: cannot be read") in report.errors
    assert ("deliver:shop.mirror:orders", "on_change") in report.started
    runner.wait()
    runner.close()
    assert mirror(shop, "select amount from orders where id = 3")[0][0] == 7


def test_a_running_job_keeps_its_lease(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's heartbeat extends the job's lease too: a job longer than a lease is never
    taken by another scheduler while it runs."""
    from dataferry.broker import runner as runner_module
    from dataferry.metadata import Leases

    real = runner_module.run_job
    seen: list[datetime] = []

    def slow(context: RunContext, job: Any, *args: Any) -> Any:
        for _ in range(4):
            lease = Leases(context.metadata).current(job.id)
            assert lease is not None
            seen.append(lease.expires_at)
            time.sleep(1.2)
        return real(context, job, *args)

    monkeypatch.setattr(runner_module, "run_job", slow)
    runner = Scheduler(context_of(shop), workers=1, lease_seconds=5)
    job = runner.graph.jobs["ingest:shop.orders"]
    started = datetime.now(UTC)
    result = runner._work(job, "freshness", runner.context)
    runner.close()
    assert result is not None and result.status == "succeeded"
    assert seen[-1] > seen[0] and seen[-1] > started + timedelta(seconds=5), seen
    assert Leases(runner.context.metadata).current(job.id) is None  # released at the end


def test_two_schedulers_on_one_postgres_database_run_each_job_once(tmp_path: Path) -> None:
    with temporary_database() as url:
        root = make_shop(tmp_path / "model", rows=2000)
        (root / "ferry.yaml").write_text(
            f"ecosystem: acme\nzones: {{eu: {{}}}}\nmetadata: {url}\n")
        command = [sys.executable, "-m", "dataferry.cli", "up", "--once", "--model", str(root)]
        both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
        for process in both:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, out + err
        with open_metadata(url) as db:
            runs = RunHistory(db).list_runs(limit=1000)
        done = [r.job_id for r in runs if r.status in ("succeeded", "unchanged")]
        assert sorted(done) == sorted(JOBS), [(r.job_id, r.status, r.worker) for r in runs]
        assert all(r.status != "failed" for r in runs)
        context = context_of(root)
        assert context.store.dataset("shop.orders").version_numbers() == [1]
        assert mirror(root, "select count(*) from orders") == [(2000,)]


def test_the_scheduler_follows_the_applied_plan(shop: Path, ferry: Any) -> None:
    assert ferry("apply", "--model", shop).code == 0
    model = shop / "teams" / "shop" / "shop.yaml"
    model.write_text(model.read_text() + """  second:
    sink: {kind: duckdb, path: out/second.duckdb}
    datasets: [{ref: shop.orders}]
""")
    clock = Clock()
    runner = scheduler(shop, clock)
    assert runner.unapplied == ["deliver:shop.second:orders"]
    runner.run_until_idle()
    assert "deliver:shop.second:orders" not in {job for job, _, _ in ran(shop)}
    runner.close()
    up = ferry("up", "--once", "--model", shop)
    assert up.code == 0 and "wait for `ferry apply`: deliver:shop.second:orders" in up.out
    assert ferry("apply", "--model", shop).code == 0
    up = ferry("up", "--once", "--model", shop)
    assert "deliver:shop.second:orders: succeeded" in up.out


def test_a_compacted_version_is_no_change_downstream(shop: Path, ferry: Any) -> None:
    clock = Clock()
    runner = scheduler(shop, clock)
    runner.run_until_idle()
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("update orders set amount = '99.00', "
                   "updated_at = '2026-02-01T00:00:00+00:00' where id = 7")
    clock.advance(hours=13)
    runner.run_until_idle()  # version 2: a deletion vector, delivered
    compacted = ferry("compact", "shop.orders", "--model", shop)
    assert compacted.code == 0 and "into version 3" in compacted.out, compacted
    before = len(ran(shop))
    assert runner.tick().started == []  # same rows: the transform and delivery are not due
    manual = ferry("run", "shop.mirror", "--model", shop)
    assert manual.code == 0, manual
    assert sorted(ran(shop)[before:]) == [  # upstream runs too: it finds nothing new
        ("deliver:shop.mirror:orders", "manual", "unchanged"),
        ("deliver:shop.mirror:totals", "manual", "unchanged"),
        ("ingest:shop.orders", "manual", "unchanged"),
        ("transform:shop.totals", "manual", "unchanged")]

    with sqlite3.connect(shop / "shop.db") as db:  # the next change flows from version 2
        db.execute("update orders set amount = '5.00', "
                   "updated_at = '2026-03-01T00:00:00+00:00' where id = 8")
    runner.close()
    assert ferry("run", "shop.mirror", "--model", shop).code == 0
    assert {(job, status) for job, _, status in ran(shop)[-4:]} == {
        ("ingest:shop.orders", "succeeded"), ("transform:shop.totals", "succeeded"),
        ("deliver:shop.mirror:orders", "succeeded"), ("deliver:shop.mirror:totals", "succeeded")}
    assert mirror(shop, "select id, amount from orders where id in (7, 8) order by id") == [
        (7, 99), (8, 5)]
    assert mirror(shop, "select count(*) from orders") == [(50,)]


SHARED = """\
  notebooks:
    sink: {kind: share}
    datasets: [{ref: shop.totals, freshness: 2h}]
"""


def test_a_share_consumer_paces_the_ingest_and_is_never_a_stale_delivery(shop: Path) -> None:
    model = shop / "teams" / "shop" / "shop.yaml"
    model.write_text(model.read_text() + SHARED)
    clock = Clock()
    runner = scheduler(shop, clock)
    runner.run_until_idle()
    assert {job for job, _, _ in ran(shop)} == set(JOBS)  # no delivery for the share
    clock.advance(minutes=61)  # its 2h freshness: the ingest runs every hour, not 12h
    runner.run_until_idle()
    assert ran(shop)[-1] == ("ingest:shop.orders", "freshness", "unchanged")
    shutil.move(shop / "shop.db", shop / "away.db")
    clock.advance(hours=25)
    runner.run_until_idle()
    stale = {s.job_id for s in Staleness(runner.context.metadata).stale()}
    assert stale == {"deliver:shop.mirror:orders", "deliver:shop.mirror:totals"}
    announced = {e.subject for e in Outbox(runner.context.metadata).after(0)
                 if e.type == "io.dataferry.dataset.stale"}
    assert not any("notebooks" in subject for subject in announced)
    runner.close()


def test_a_version_published_between_ticks_is_seen_by_the_next_tick(shop: Path,
                                                                       ferry: Any) -> None:
    """A tick lists the store's heads once: a version published by another process
    (here `ferry run` of the ingest) after a tick must make its readers due at the next
    one, and each job must be decided as asking the store about it alone would."""
    clock = Clock()
    runner = scheduler(shop, clock)
    while runner.tick().started:  # ticks as `ferry up` makes them, until nothing is due
        runner.wait()
    assert {job for job, _, _ in ran(shop)} == set(JOBS)
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("update orders set amount = '42.00', "
                   "updated_at = '2026-02-01T00:00:00+00:00' where id = 3")
    assert ferry("run", "shop.orders", "--model", shop).code == 0  # version 2, elsewhere
    at = clock()
    alone = {job_id: runner.due(job, at) for job_id, job in runner.graph.jobs.items()}
    assert alone == {"ingest:shop.orders": None, "transform:shop.totals": "on_change",
                     "deliver:shop.mirror:orders": "on_change",
                     "deliver:shop.mirror:totals": None}
    started = runner.tick().started
    assert sorted(started) == sorted((job, why) for job, why in alone.items() if why)
    runner.wait()
    assert runner.tick().started == [("deliver:shop.mirror:totals", "on_change")]
    runner.wait()
    assert runner.tick().started == []
    runner.close()
    assert mirror(shop, "select amount from orders where id = 3")[0][0] == 42
