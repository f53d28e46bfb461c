"""The event outbox: events are written with the change they announce, and a reader
following it misses none, even one whose transaction commits after a later one's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataferry.metadata import (
    EventCursor,
    Metadata,
    Outbox,
    PublishedVersion,
    RunHistory,
    Staleness,
    VersionRef,
)
from dataferry.metadata.outbox import add_event
from tests.conftest import FakeClock

MOMENT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_a_finished_run_and_its_versions_are_events_of_the_same_transaction(
        db: Metadata, clock: FakeClock) -> None:
    runs, outbox = RunHistory(db, now=clock), Outbox(db)
    run_id = runs.start_run("ingest:shop.orders", "ingest", "schedule", 1, "h:1", 60)
    assert outbox.last_seq() == 0  # a started run is not news yet
    clock.advance(5)
    published = PublishedVersion("shop.orders", 3, 1_000, "ab" * 32, MOMENT, 3, 2)
    assert runs.finish_run(run_id, "succeeded", rows_in=1_000, rows_out=1_000,
                           versions_written=[VersionRef("shop.orders", 3)],
                           published=[published])
    run_event, version_event = outbox.after(0)
    assert (run_event.id, run_event.type, run_event.source, run_event.subject) == (
        f"run-{run_id}", "io.dataferry.run.succeeded", f"/runs/{run_id}", "ingest:shop.orders")
    assert run_event.time == clock.at and run_event.data["rows_out"] == 1_000
    assert (version_event.type, version_event.source, version_event.time) == (
        "io.dataferry.dataset.version.published", "/datasets/shop.orders", MOMENT)
    assert version_event.data == {"ref": "shop.orders", "version": 3, "rows": 1_000,
                                  "added": 3, "removed": 2, "manifest_hash": "ab" * 32}
    # A verdict that comes too late (the run was declared abandoned) announces nothing.
    assert not runs.finish_run(run_id, "failed", error="late")
    assert outbox.last_seq() == version_event.seq


def test_nothing_new_is_no_news_unless_the_job_was_failing(db: Metadata) -> None:
    runs, outbox = RunHistory(db), Outbox(db)

    def run(status: str) -> list[str]:
        before = outbox.last_seq()
        run_id = runs.start_run("ingest:shop.orders", "ingest", "freshness", 1, "h:1", 60)
        runs.finish_run(run_id, status, error="boom" if status == "failed" else None)
        return [f"{e.type.rsplit('.', 1)[1]}{' recovered' if e.data['recovered'] else ''}"
                for e in outbox.after(before)]

    assert run("unchanged") == []  # the first run found nothing: nothing happened
    assert run("succeeded") == ["succeeded"]
    assert run("unchanged") == []
    assert run("failed") == ["failed"]
    assert run("unchanged") == ["succeeded recovered"]  # it works again: that is news
    assert run("unchanged") == []
    assert run("skipped") == ["failed"]
    assert run("succeeded") == ["succeeded recovered"]


def test_an_abandoned_run_and_a_new_stale_mark_are_events(db: Metadata,
                                                         clock: FakeClock) -> None:
    runs, outbox, stale = RunHistory(db, now=clock), Outbox(db), Staleness(db, now=clock)
    run_id = runs.start_run("deliver:crm.app:orders", "deliver", "on_change", 1, "h:1", 60)
    clock.advance(61)
    assert runs.mark_abandoned(run_id)
    (failed,) = outbox.after(0)
    assert failed.type == "io.dataferry.run.failed" and failed.data["status"] == "failed"
    assert "abandoned" in failed.data["error"]

    assert stale.mark("deliver:crm.app:orders", MOMENT, "data is from ...", "shop.orders",
                      "crm.app")
    assert not stale.mark("deliver:crm.app:orders", MOMENT, "still old", "shop.orders",
                          "crm.app")  # still stale: no second event
    (went_stale,) = outbox.after(failed.seq)
    assert (went_stale.type, went_stale.source, went_stale.subject) == (
        "io.dataferry.dataset.stale", "/datasets/shop.orders", "deliver:crm.app:orders")
    assert went_stale.data["consumer"] == "crm.app"
    assert went_stale.data["data_as_of"] == MOMENT.isoformat()


# On PostgreSQL only: SQLite's writers take turns, so its numbers commit in order.
@pytest.mark.parametrize("url", ["postgres"], indirect=True)
def test_the_cursor_picks_up_an_event_that_commits_late(db: Metadata) -> None:
    outbox = Outbox(db)
    cursor = EventCursor(outbox, outbox.last_seq())
    with db.sql.transaction() as slow:
        add_event(slow, "slow", "t", "/s", None, MOMENT, {})  # has its number, uncommitted
        with db.sql.transaction() as quick:
            add_event(quick, "quick", "t", "/q", None, MOMENT, {})
        assert [e.id for e in cursor.poll()] == ["quick"]
    assert [e.id for e in cursor.poll()] == ["slow"]  # not skipped
    assert cursor.poll() == []


def test_a_gap_left_by_a_rollback_is_given_up_after_a_while(db: Metadata) -> None:
    outbox = Outbox(db)
    now = [0.0]
    cursor = EventCursor(outbox, outbox.last_seq(), patience=60, clock=lambda: now[0])
    with pytest.raises(KeyboardInterrupt), db.sql.transaction() as rolled:
        add_event(rolled, "never", "t", "/n", None, MOMENT, {})
        raise KeyboardInterrupt  # rolls back
    with db.sql.transaction() as sql:
        add_event(sql, "after", "t", "/a", None, MOMENT, {})
    assert [e.id for e in cursor.poll()] == ["after"]
    now[0] = 61
    assert cursor.poll() == [] and not cursor._gaps
