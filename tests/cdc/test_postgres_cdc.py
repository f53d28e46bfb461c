"""``capture: cdc`` on PostgreSQL, end to end with ``ferry run``, against a server of the
tests' own with ``wal_level=logical`` (``logical_server``): what the store holds after
each run is compared with the source table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dataferry.connectors.postgres.cdc import slot_name
from dataferry.model.load import load_model
from dataferry.store.store import Store
from tests.cdc.logical_server import database, logical_server
from tests.conftest import Result, write_files

TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  pg:
    kind: postgres
    dsn: {dsn}
    datasets:
      orders:
        table: public.orders
        capture: cdc
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
          amount: {{type: decimal(12,2)}}
          at: {{type: timestamp_tz}}
          doc: {{type: json}}
"""
DDL = """create table orders (id bigint primary key, name text, amount numeric(12,2),
    at timestamptz, doc jsonb, note text)"""
COLUMNS = "id, name, amount, at, doc::text"
SLOT = slot_name("shop.orders")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with logical_server() as url:
        yield url


@pytest.fixture
def source(server: str) -> Iterator[str]:
    with database(server) as dsn:
        execute(dsn, DDL)
        yield dsn


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return list(connection.execute(query).fetchall())


def make_model(tmp_path: Path, dsn: str) -> Path:
    return write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM.format(dsn=dsn),
    })


def stored(root: Path) -> list[tuple[Any, ...]]:
    """The head's rows, as the source query returns them (ordered by id)."""
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    dataset = Store.for_model(root, loaded.ecosystem).dataset("shop.orders")
    head = dataset.head()
    assert head is not None
    rows = dataset.reader(head).read_all().to_pylist()
    out = [(r["id"], r["name"], r["amount"], r["at"],
            None if r["doc"] is None else json.dumps(json.loads(r["doc"]))) for r in rows]
    return sorted(out, key=lambda r: r[0])


def source_rows(dsn: str) -> list[tuple[Any, ...]]:
    return [(*row[:4], None if row[4] is None else json.dumps(json.loads(row[4])))
            for row in fetch(dsn, f"select {COLUMNS} from orders order by id")]


def versions(root: Path) -> list[dict[str, Any]]:
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    dataset = Store.for_model(root, loaded.ecosystem).dataset("shop.orders")
    return [{"version": v.number, "cursor": v.manifest.cursor, "added": v.manifest.added_rows,
             "removed": v.manifest.removed_rows} for v in dataset.versions()]


def slot(dsn: str) -> dict[str, Any]:
    rows = fetch(dsn, "select confirmed_flush_lsn::text, restart_lsn::text, "
                      f"pg_current_wal_lsn()::text from pg_replication_slots "
                      f"where slot_name = '{SLOT}'")
    if not rows:
        return {}
    return dict(zip(("confirmed", "restart", "current"), rows[0], strict=True))


def lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def test_changes_become_one_keyed_version_per_run(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    execute(source, "insert into orders select i, 'n' || i, i * 1.5, "
                    "'2026-01-01T00:00:00Z'::timestamptz + i * interval '1 hour', "
                    "jsonb_build_object('i', i), repeat('x', 10) from generate_series(1, 5) i")
    root = make_model(tmp_path, source)
    first = ferry("run", "shop.orders", "--model", root)
    assert first.code == 0, first
    assert stored(root) == source_rows(source) and len(stored(root)) == 5
    assert [v["cursor"]["slot"] for v in versions(root)] == [SLOT]

    execute(source,
            "insert into orders values (6, 'six', 6.00, now(), '[1, 2]', null)",
            "update orders set name = 'two' where id = 2",
            "delete from orders where id = 3",
            "update orders set id = 40 where id = 4",  # a key change: delete 4, upsert 40
            "begin; insert into orders values (7, 'rolled back', 1, now(), null, null); "
            "rollback",
            "update orders set amount = 10.01 where id = 5",
            "update orders set amount = 10.02, doc = null where id = 5",  # twice: the last
            "insert into orders values (8, 'gone', 1, now(), null, null)",
            "delete from orders where id = 8",  # inserted and deleted in one run: nothing
            "update orders set note = 'not declared' where id = 1")  # an undeclared column
    second = ferry("run", "shop.orders", "--model", root)
    assert second.code == 0, second
    assert stored(root) == source_rows(source)
    assert [r[0] for r in stored(root)] == [1, 2, 5, 6, 40]
    head = versions(root)[-1]
    assert head["version"] == 2 and lsn(head["cursor"]["lsn"]) > lsn(
        versions(root)[0]["cursor"]["lsn"])
    # upserts of 1 (its undeclared column changed: the log says it changed), 2, 5, 6, 40;
    # deletes of 3, 4
    assert (head["added"], head["removed"]) == (5, 5)

    third = ferry("run", "shop.orders", "--model", root)  # nothing changed: no version
    assert third.code == 0 and len(versions(root)) == 2


def test_a_transaction_open_across_a_run_lands_whole_in_the_next(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    with psycopg.connect(source) as open_transaction:
        open_transaction.execute("insert into orders values (100, 'open', 1, now(), null, "
                                 "null)")
        execute(source, "insert into orders values (101, 'committed', 1, now(), null, null)")
        assert ferry("run", "shop.orders", "--model", root).code == 0
        assert [r[0] for r in stored(root)] == [101]
        open_transaction.execute("insert into orders values (102, 'open too', 1, now(), "
                                 "null, null)")
        open_transaction.commit()
    assert ferry("run", "shop.orders", "--model", root).code == 0
    assert [r[0] for r in stored(root)] == [100, 101, 102]
    assert stored(root) == source_rows(source)


def test_a_run_leaves_no_older_wal_in_the_slot(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "insert into orders select i, 'n', 1, now(), null, repeat('x', 100) "
                    "from generate_series(1, 2000) i")
    after_changes = lsn(fetch(source, "select pg_current_wal_lsn()::text")[0][0])
    execute(source, "checkpoint")  # logs the running transactions: a restart point
    before = slot(source)
    assert lsn(before["confirmed"]) < after_changes  # the changes wait in the slot
    assert ferry("run", "shop.orders", "--model", root).code == 0
    after = slot(source)
    assert lsn(after["confirmed"]) >= after_changes
    assert lsn(after["restart"]) >= after_changes  # no WAL older than the run is held
    assert len(stored(root)) == 2000


CRASH_POINTS = ["after-commit", "before-signature", "cdc-before-acknowledge"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_anywhere_loses_and_duplicates_nothing(
        source: str, tmp_path: Path, ferry: Callable[..., Result], point: str) -> None:
    execute(source, "insert into orders select i, 'n', 1, now(), null, null "
                    "from generate_series(1, 50) i")
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "update orders set name = 'changed' where id <= 10",
            "delete from orders where id between 40 and 45",
            "insert into orders values (99, 'new', 1, now(), null, null)")
    crashed = subprocess.run(
        [sys.executable, "-m", "dataferry.cli", "run", "shop.orders", "--model", str(root)],
        env={**os.environ, "FERRY_CRASH_AT": point}, capture_output=True, text=True,
        timeout=300)
    assert crashed.returncode == -9, crashed.stderr
    execute(source, "insert into orders values (200, 'after the crash', 1, now(), null, "
                    "null)")
    again = ferry("run", "shop.orders", "--model", root)
    assert again.code == 0, again
    assert stored(root) == source_rows(source)
    published = versions(root)
    # the crashed run's version, if it was signed, is followed by one with row 200 only
    assert len(published) == (3 if point == "cdc-before-acknowledge" else 2)
    assert published[-1]["added"] == (1 if point == "cdc-before-acknowledge" else 12)


def test_a_truncate_makes_the_run_a_snapshot_of_what_follows(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    execute(source, "insert into orders select i, 'n', 1, now(), null, null "
                    "from generate_series(1, 10) i")
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "update orders set name = 'before' where id = 1", "truncate orders",
            "insert into orders values (3, 'after', 2, now(), null, null)")
    refused = ferry("run", "shop.orders", "--model", root)  # 10 rows to 1: the delete limit
    assert refused.code != 0 and "max_delete_ratio" in refused.out + refused.err
    assert len(stored(root)) == 10 and len(versions(root)) == 1
    allowed = ferry("run", "shop.orders", "--model", root, "--allow-delete")
    assert allowed.code == 0, allowed
    assert stored(root) == source_rows(source) and [r[0] for r in stored(root)] == [3]


def test_a_declared_column_dropped_while_changes_wait_stops_the_run(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "insert into orders values (1, 'one', 1, now(), null, null)",
            "alter table orders drop column doc",
            "insert into orders values (2, 'two', 1, now(), null)")
    stopped = ferry("run", "shop.orders", "--model", root)
    assert stopped.code != 0 and "doc" in stopped.out + stopped.err
    assert len(versions(root)) == 1 and stored(root) == []


def test_unchanged_toasted_values_need_replica_identity_full(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    big = "(select string_agg(md5(i::text), '') from generate_series(1, 400) i)"
    execute(source, f"insert into orders values (1, {big}, 1, now(), null, null)")
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "update orders set amount = 2 where id = 1")
    stopped = ferry("run", "shop.orders", "--model", root)
    assert stopped.code != 0 and "REPLICA IDENTITY FULL" in stopped.out + stopped.err
    execute(source, "alter table orders replica identity full")
    assert ferry("run", "shop.orders", "--model", root, "--full").code == 0
    execute(source, "update orders set amount = 3 where id = 1")
    assert ferry("run", "shop.orders", "--model", root).code == 0
    assert stored(root) == source_rows(source) and len(stored(root)[0][1]) == 12_800


def test_a_table_without_a_primary_key_is_refused_before_publishing(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    execute(source, "alter table orders drop constraint orders_pkey")
    root = make_model(tmp_path, source)
    refused = ferry("run", "shop.orders", "--model", root)
    assert refused.code != 0 and "no primary key" in refused.out + refused.err
    assert fetch(source, "select count(*) from pg_publication")[0][0] == 0


def publications(dsn: str) -> list[str]:
    return [r[0] for r in fetch(dsn, "select pubname from pg_publication")]


@pytest.mark.parametrize("change", ["capture: snapshot", "removed"])
def test_ferry_apply_drops_the_slot_of_a_dataset_that_stopped_reading_changes(
        source: str, tmp_path: Path, ferry: Callable[..., Result], change: str) -> None:
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    first = ferry("apply", "--model", root)
    assert first.code == 0, first
    assert slot(source) and publications(source) == [SLOT]  # still reading changes: kept
    team = root / "teams/shop/shop.yaml"
    if change == "removed":
        team.write_text(TEAM.format(dsn=source).split("    datasets:")[0] +
                        "    datasets: {}\n")
    else:
        team.write_text(TEAM.format(dsn=source).replace("capture: cdc", "capture: snapshot"))
    applied = ferry("apply", "--model", root)
    assert applied.code == 0, applied
    assert f"dropped replication slot {SLOT}" in applied.out
    assert slot(source) == {} and publications(source) == []
    assert ferry("apply", "--model", root).code == 0  # nothing left to drop: no error


def test_check_connect_says_what_keeps_cdc_from_running(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    ready = ferry("check", "--connect", "--model", root, "--json")
    assert ready.code == 0 and {f["code"] for f in json.loads(ready.out)["findings"]} == {
        "schema-mismatch"}, ready  # only the undeclared column "note"
    execute(source, "create role reader login", "grant select on orders to reader",
            "alter table orders drop constraint orders_pkey")
    root = make_model(tmp_path / "reader", source.replace("postgres@", "reader@"))
    check = ferry("check", "--connect", "--model", root, "--json")
    findings = {(f["code"], f["severity"]): f["message"]
                for f in json.loads(check.out)["findings"]}
    assert check.code == 1, check
    assert "lacks the REPLICATION attribute" in findings[("unreachable", "warning")]
    assert "needs a primary key on table public.orders" in \
        findings[("missing-primary-key", "error")]


def test_check_connect_reports_a_server_without_logical_wal(
        tmp_path: Path, ferry: Callable[..., Result]) -> None:
    from tests.connectors.pg_helpers import temporary_database

    with temporary_database() as dsn:  # the shared server: wal_level replica
        if fetch(dsn, "show wal_level")[0][0] == "logical":
            pytest.skip("the shared server already has wal_level = logical")
        execute(dsn, DDL)
        check = ferry("check", "--connect", "--model", make_model(tmp_path, dsn), "--json")
    messages = [f["message"] for f in json.loads(check.out)["findings"]]
    assert any("wal_level is replica; set wal_level = logical" in m for m in messages), check


def test_lag_in_bytes_and_seconds_for_datasets_the_api_and_the_page(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    from dataferry.model.graph import ModelIndex
    from dataferry.server.catalog import dataset_detail

    root = make_model(tmp_path, source)
    before = json.loads(ferry("datasets", "--model", root, "--json").out)
    assert before[0]["lag"]["bytes"] is None  # no slot before the first run
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "insert into orders select i, repeat('x', 500), 1, now(), null, null "
                    "from generate_series(1, 2000) i")
    waiting = json.loads(ferry("datasets", "--model", root, "--json").out)[0]["lag"]
    assert waiting["bytes"] > 1_000_000 and waiting["seconds"] >= 0 and waiting["read_at"]
    table = ferry("datasets", "--model", root)
    assert "lag" in table.out and "MiB" in table.out
    assert ferry("run", "shop.orders", "--model", root).code == 0
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    detail = dataset_detail(ModelIndex(loaded.ecosystem),
                            Store.for_model(root, loaded.ecosystem), None, "shop.orders",
                            root=root)
    assert detail is not None and detail.lag is not None
    assert detail.lag["bytes"] < waiting["bytes"] // 10  # caught up


def test_ferry_up_reads_the_change_log_continuously(
        source: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from dataferry.broker.scheduler import Scheduler
    from dataferry.engine.context import RunContext

    root = make_model(tmp_path, source)
    team = root / "teams/shop/shop.yaml"
    team.write_text(team.read_text() + "consumers:\n  notebooks:\n    sink: {kind: share}\n"
                    "    datasets: [{ref: shop.orders, freshness: 1h}]\n")
    at = [datetime(2026, 12, 7, 6, 0, tzinfo=UTC)]
    scheduler = Scheduler(RunContext.from_loaded(load_model(root)), workers=1,
                          now=lambda: at[0])
    try:
        scheduler.run_until_idle()
        assert versions(root) and stored(root) == []
        execute(source, "insert into orders values (1, 'one', 1, now(), null, null)")
        at[0] += timedelta(seconds=2)  # long before half the freshness (30 min)
        scheduler.run_until_idle()
    finally:
        scheduler.close()
    assert [r[0] for r in stored(root)] == [1]
