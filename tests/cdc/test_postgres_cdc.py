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

from dataferry.connectors.postgres.cdc_slots import slot_name
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
          amount: {{type: {amount}}}
          at: {{type: timestamp_tz}}
          doc: {{type: json}}
"""
DDL = """create table orders (id bigint primary key, name text, amount {amount},
    at timestamptz, doc jsonb, note text)"""
AMOUNT = {"text": ("numeric(12,2)", "decimal(12,2)"), "binary": ("float8", "float64"),
          "spilled": ("float8", "float64")}
"""The amount column per value path: a numeric makes the slot send text values that the
server casts; with only plain types (float8) it sends binary values decoded here
(``cdc_binary``), kept in memory or (``spilled``: tiny batches and memory) spilled to a
Parquet file for DuckDB. The values the tests write are exact in all."""
COLUMNS = "id, name, amount, at, doc::text"
SLOT = slot_name("shop.orders")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with logical_server() as url:
        yield url


@pytest.fixture(params=sorted(AMOUNT))
def source(server: str, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "spilled":
        from dataferry.connectors.postgres import cdc

        monkeypatch.setattr(cdc, "STAGE_ROWS", 3)
        monkeypatch.setattr(cdc, "KEEP_BYTES", 200)
    with database(server) as dsn:
        execute(dsn, DDL.format(amount=AMOUNT[request.param][0]))
        yield dsn


@pytest.fixture
def empty(server: str) -> Iterator[str]:
    """A database without the orders table (tests that make their own)."""
    with database(server) as dsn:
        yield dsn


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return list(connection.execute(query).fetchall())


def team(dsn: str) -> str:
    """TEAM for the orders table of ``dsn``, its amount declared as the table has it."""
    try:
        found = fetch(dsn, "select format_type(atttypid, atttypmod) from pg_attribute where "
                           "attrelid = to_regclass('orders') and attname = 'amount'")
    except psycopg.OperationalError:  # an unreachable source, on purpose
        found = []
    binary = bool(found) and found[0][0] == "double precision"
    return TEAM.format(dsn=dsn, amount=AMOUNT["binary" if binary else "text"][1])


def make_model(tmp_path: Path, dsn: str) -> Path:
    return write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": team(dsn),
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


CRASH_POINTS = ["cdc-streaming", "after-commit", "before-signature",
                "cdc-before-acknowledge"]


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
    team_file = root / "teams/shop/shop.yaml"
    if change == "removed":
        team_file.write_text(team(source).split("    datasets:")[0] +
                        "    datasets: {}\n")
    else:
        team_file.write_text(team(source).replace("capture: cdc", "capture: snapshot"))
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
    reader = "reader_" + source.rsplit("/", 1)[1]  # roles are the server's: one per database
    execute(source, f"create role {reader} login", f"grant select on orders to {reader}",
            "alter table orders drop constraint orders_pkey")
    root = make_model(tmp_path / "reader", source.replace("postgres@", f"{reader}@"))
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
        execute(dsn, DDL.format(amount="numeric(12,2)"))
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
    team_file = root / "teams/shop/shop.yaml"
    team_file.write_text(team_file.read_text() + "consumers:\n  notebooks:\n    sink: {kind: share}\n"
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


TYPES_TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  pg:
    kind: postgres
    dsn: {dsn}
    datasets:
      typed:
        table: typed
        capture: {capture}
        primary_key: [k1, k2]
        columns:
          k1: {{type: uuid, nullable: false}}
          k2: {{type: string, nullable: false}}
          n: {{type: decimal(20,6)}}
          f: {{type: float64}}
          r: {{type: float32}}
          b: {{type: bool}}
          d: {{type: date}}
          t: {{type: time}}
          ts: {{type: timestamp}}
          tz: {{type: timestamp_tz}}
          iv: {{type: interval}}
          raw: {{type: binary}}
          tags: {{type: list<int32>}}
          mood: {{type: string}}
          doc: {{type: json}}
"""
TYPES_DDL = """create type mood as enum ('sad', 'happy');
create table typed (k1 uuid, k2 text, n numeric(20,6), f float8, r float4, b bool, d date,
    t time, ts timestamp, tz timestamptz, iv interval, raw bytea, tags int4[], mood mood,
    doc jsonb, primary key (k1, k2))"""
TYPES_ROWS = """insert into typed values
 ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'tab\there "quoted" \\ back', 12345678901234.123456,
  1.0000000000000002, 3.4028235e38, true, '0001-01-01', '23:59:59.999999',
  '1999-12-31 23:59:59.123456', '2026-03-29 01:30:00+02', 'P1Y2M-3DT4H5M6.5S',
  '\\x00ff0a5c', '{1,NULL,-3}', 'happy', '{"a": [1, 2.50, null], "b": "ü"}'),
 ('00000000-0000-0000-0000-000000000000', 'new
line', -0.000001, 'NaN', '-Infinity', null, '9999-12-31', '00:00', null,
  '1970-01-01 00:00:00+00', 'PT-0.000001S', '', '{}', 'sad', 'null'),
 ('ffffffff-ffff-ffff-ffff-ffffffffffff', '', null, -0.0, 1e-45, false, null, null,
  '2000-02-29 12:00', null, null, null, null, null, null)"""


def test_every_type_reads_the_same_by_change_as_by_snapshot(
        empty: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    source = empty
    execute(source, *TYPES_DDL.split(";"))
    by_change = write_files(tmp_path / "cdc", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TYPES_TEAM.format(dsn=source, capture="cdc")})
    by_snapshot = write_files(tmp_path / "snapshot", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TYPES_TEAM.format(dsn=source, capture="snapshot")})
    assert ferry("run", "shop.typed", "--model", by_change).code == 0  # the empty snapshot
    execute(source, TYPES_ROWS,
            "update typed set k2 = 'renamed' where k2 = ''")  # a key change, composite key
    for root in (by_change, by_snapshot):
        result = ferry("run", "shop.typed", "--model", root)
        assert result.code == 0, result

    def rows(root: Path) -> list[dict[str, Any]]:
        loaded = load_model(root)
        assert loaded.ecosystem is not None
        dataset = Store.for_model(root, loaded.ecosystem).dataset("shop.typed")
        head = dataset.head()
        assert head is not None
        return sorted(dataset.reader(head).read_all().to_pylist(), key=lambda r: repr(r))

    changed, snapshot = rows(by_change), rows(by_snapshot)
    assert len(changed) == 3 and {r["k2"] for r in changed} >= {"renamed"}
    assert repr(changed) == repr(snapshot)  # repr: NaN and -0.0 compare by their text


PARTED_TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  pg:
    kind: postgres
    dsn: {dsn}
    datasets:
      parted:
        table: parted
        capture: cdc
        primary_key: [id, region]
        columns:
          id: {{type: int64, nullable: false}}
          region: {{type: string, nullable: false}}
          amount: {{type: int32}}
"""


def test_a_partitioned_table_is_captured_under_its_own_name(
        empty: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    source = empty
    execute(source, "create table parted (id bigint, region text, amount int, "
                    "primary key (id, region)) partition by list (region)",
            "create table parted_eu partition of parted for values in ('eu')",
            "create table parted_us partition of parted for values in ('us')",
            "insert into parted values (1, 'eu', 1), (2, 'us', 2)")
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": PARTED_TEAM.format(dsn=source)})
    assert ferry("run", "shop.parted", "--model", root).code == 0
    execute(source, "insert into parted values (3, 'eu', 3), (4, 'us', 4)",
            "update parted set region = 'us' where id = 1",  # moves to the other partition
            "update parted set amount = 20 where id = 2")
    result = ferry("run", "shop.parted", "--model", root)
    assert result.code == 0, result
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    dataset = Store.for_model(root, loaded.ecosystem).dataset("shop.parted")
    head = dataset.head()
    assert head is not None
    rows = sorted((r["id"], r["region"], r["amount"])
                  for r in dataset.reader(head).read_all().to_pylist())
    assert rows == sorted(fetch(source, "select id, region, amount from parted")) == [
        (1, "us", 1), (2, "us", 20), (3, "eu", 3), (4, "us", 4)]


def test_the_lag_of_an_unreachable_source_says_so_without_secrets(
        tmp_path: Path, ferry: Callable[..., Result]) -> None:
    from tests.connectors.pg_helpers import free_port

    root = make_model(tmp_path, f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/x")
    listed = ferry("datasets", "--model", root, "--json")
    assert listed.code == 0, listed
    lag = json.loads(listed.out)[0]["lag"]
    assert lag["bytes"] is None and "127.0.0.1" in lag["error"]
    assert "hunter2" not in listed.out
    assert "unknown (source unreachable)" in ferry("datasets", "--model", root).out


BINARY_TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  pg:
    kind: postgres
    dsn: {dsn}
    datasets:
      plain:
        table: plain
        capture: {capture}
        primary_key: [k1, k2]
        columns:
          k1: {{type: uuid, nullable: false}}
          k2: {{type: string, nullable: false}}
          i2: {{type: int16}}
          i4: {{type: int32}}
          i8: {{type: int64}}
          f: {{type: float64}}
          r: {{type: float32}}
          b: {{type: bool}}
          d: {{type: date}}
          t: {{type: time}}
          ts: {{type: timestamp}}
          tz: {{type: timestamp_tz}}
          raw: {{type: binary}}
          c: {{type: string}}
          v: {{type: string}}
          mood: {{type: string}}
          j: {{type: json}}
          jb: {{type: json}}
"""
BINARY_DDL = """create type mood as enum ('sad', 'happy');
create table plain (k1 uuid, k2 text, i2 int2, i4 int4, i8 int8, f float8, r float4, b bool,
    d date, t time, ts timestamp, tz timestamptz, raw bytea, c char(5), v varchar(10),
    mood mood, j json, jb jsonb, primary key (k1, k2))"""
BINARY_ROWS = """insert into plain values
 ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'tab\there "quoted" \\ back', -32768, 2147483647,
  -9223372036854775808, 1.0000000000000002, 3.4028235e38, true, '0001-01-01',
  '23:59:59.999999', '1999-12-31 23:59:59.123456', '2026-03-29 01:30:00+02', '\\x00ff0a5c',
  'ab', 'ü€', 'happy', '{"a": [1, 2.50, null],  "b": "ü"}', '{"a": [1, 2.50, null], "b": "ü"}'),
 ('00000000-0000-0000-0000-000000000000', 'new
line', 0, -1, 1, 'NaN', '-Infinity', null, '9999-12-31', '00:00', '0001-01-01 00:00:00',
  '1970-01-01 00:00:00+00', '', '', '', 'sad', 'null', 'null'),
 ('ffffffff-ffff-ffff-ffff-ffffffffffff', '', null, null, null, -0.0, 1e-45, false, null,
  null, '2000-02-29 12:00', '2262-04-11 23:47:16.854775+00', null, null, null, null, null,
  null)"""


def test_plain_types_read_the_same_by_binary_change_as_by_snapshot(
        empty: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    """Only types whose binary form is decoded here: the slot sends binary values, and
    every value reads as a table read gives it (edges: extremes, NaN, -0.0, BC dates, the
    jsonb's normal form against the json's text, a padded char, NULLs). Python's dates
    cannot hold BC ones, so those are left to the unit tests of ``cdc_binary``."""
    execute(empty, *BINARY_DDL.split(";"))
    models = {capture: write_files(tmp_path / capture, {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": BINARY_TEAM.format(dsn=empty, capture=capture)})
        for capture in ("cdc", "snapshot")}
    assert ferry("run", "shop.plain", "--model", models["cdc"]).code == 0  # empty snapshot
    execute(empty, BINARY_ROWS,
            "update plain set k2 = 'renamed' where k2 = ''",  # a key change, composite key
            "update plain set i4 = 7, tz = null where i2 = 0",
            "insert into plain (k1, k2) values ('11111111-1111-1111-1111-111111111111', 'x')",
            "delete from plain where k2 = 'x'")
    for root in models.values():
        result = ferry("run", "shop.plain", "--model", root)
        assert result.code == 0, result

    def rows(root: Path) -> list[dict[str, Any]]:
        loaded = load_model(root)
        assert loaded.ecosystem is not None
        dataset = Store.for_model(root, loaded.ecosystem).dataset("shop.plain")
        head = dataset.head()
        assert head is not None
        return sorted(dataset.reader(head).read_all().to_pylist(), key=lambda r: repr(r))

    changed, snapshot = rows(models["cdc"]), rows(models["snapshot"])
    assert len(changed) == 3 and {r["k2"] for r in changed} >= {"renamed"}
    assert repr(changed) == repr(snapshot)  # repr: NaN and -0.0 compare by their text
    assert {r["i4"] for r in changed} == {2147483647, 7, None}


def test_an_infinite_timestamp_stops_a_binary_change_read_as_it_stops_a_snapshot(
        empty: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    execute(empty, *BINARY_DDL.split(";"))
    models = {capture: write_files(tmp_path / capture, {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": BINARY_TEAM.format(dsn=empty, capture=capture)})
        for capture in ("cdc", "snapshot")}
    assert ferry("run", "shop.plain", "--model", models["cdc"]).code == 0
    execute(empty, "insert into plain (k1, k2, ts) values "
                   "('11111111-1111-1111-1111-111111111111', 'x', 'infinity')")
    for root in models.values():
        stopped = ferry("run", "shop.plain", "--model", root)
        assert stopped.code != 0
        assert "column ts has infinity or a value beyond Arrow's range" in \
            stopped.out + stopped.err, stopped
    execute(empty, "update plain set ts = '2026-01-01' where k2 = 'x'")
    again = ferry("run", "shop.plain", "--model", models["cdc"])  # the insert is still read
    assert again.code != 0 and "infinity" in again.out + again.err
    assert ferry("run", "shop.plain", "--model", models["cdc"], "--full").code == 0
    loaded = load_model(models["cdc"])
    assert loaded.ecosystem is not None
    dataset = Store.for_model(models["cdc"], loaded.ecosystem).dataset("shop.plain")
    head = dataset.head()
    assert head is not None and head.number == 2
    assert [str(r["ts"]) for r in dataset.reader(head).read_all().to_pylist()] == [
        "2026-01-01 00:00:00"]


def _read_changes(root: Path) -> Any:
    """The connector's change read of shop.orders from its head's position (in process)."""
    from dataferry.connectors.base import ReadRequest
    from dataferry.connectors.registry import source_class

    loaded = load_model(root)
    assert loaded.ecosystem is not None
    spec = loaded.ecosystem.teams["shop"].sources["pg"]
    connector = source_class(spec.kind)("shop.pg", spec, root)
    head = Store.for_model(root, loaded.ecosystem).dataset("shop.orders").head()
    assert head is not None
    dataset = spec.datasets["orders"]
    return connector, connector.read_changes(ReadRequest(
        dataset="shop.orders", spec=dataset, columns=list(dataset.columns),
        state=head.manifest.cursor))


def test_the_read_holds_no_walsender_and_a_failed_confirmation_advances_the_slot_anyway(
        source: str, tmp_path: Path, ferry: Callable[..., Result],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once read, the stream is ended and its connection closed (no walsender waits, and
    times out, through a long publish). When the confirming stream cannot be opened
    (here: no replication connection to be had), the slot is advanced over an ordinary
    connection instead, restart point included."""
    from dataferry.connectors.postgres.connection import Server
    from dataferry.errors import TransientError

    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "insert into orders select i, 'n', 1, now(), null, null "
                    "from generate_series(1, 100) i", "checkpoint")
    connector, changes = _read_changes(root)
    try:
        assert changes.upserts.read_all().num_rows == 100
        assert fetch(source, "select count(*) from pg_stat_activity where backend_type = "
                             "'walsender' and datname = current_database()")[0][0] == 0

        def refused(self: Server) -> None:
            raise TransientError("no replication connection (a test)")

        monkeypatch.setattr(Server, "connect_replication", refused)
        changes.acknowledge()
    finally:
        changes.close()
        connector.close()
    after = slot(source)
    assert after["confirmed"] == changes.position["lsn"]
    assert lsn(after["restart"]) > lsn(versions(root)[0]["cursor"]["lsn"])


def test_a_read_that_is_never_confirmed_leaves_the_slot_where_it_was(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    """Status updates while reading confirm nothing: only ``acknowledge`` moves the slot."""
    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    before = slot(source)
    execute(source, "insert into orders select i, 'n', 1, now(), null, null "
                    "from generate_series(1, 100) i")
    connector, changes = _read_changes(root)
    try:
        assert changes.upserts.read_all().num_rows == 100
    finally:
        changes.close()
        connector.close()
    assert slot(source)["confirmed"] == before["confirmed"]
    assert ferry("run", "shop.orders", "--model", root).code == 0
    assert len(stored(root)) == 100 and slot(source)["confirmed"] != before["confirmed"]


def _hold_slot(dsn: str) -> psycopg.Connection[Any]:
    """Another session streaming the dataset's slot (as a killed run's walsender that has
    not noticed yet): the slot is active until this connection closes."""
    holder = psycopg.connect(dsn, autocommit=True, replication="database")
    result = holder.pgconn.exec_(
        f"START_REPLICATION SLOT {SLOT} LOGICAL 0/0 (proto_version '1', "
        f"publication_names '{SLOT}')".encode())
    assert result.status == psycopg.pq.ExecStatus.COPY_BOTH
    return holder


def test_a_slot_still_held_by_another_session_is_waited_for(
        source: str, tmp_path: Path, ferry: Callable[..., Result],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from dataferry.connectors.postgres import cdc_stream

    root = make_model(tmp_path, source)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    execute(source, "insert into orders values (1, 'one', 1, now(), null, null)")
    holder = _hold_slot(source)
    release = threading.Timer(1.5, holder.close)
    release.start()
    try:
        waited = ferry("run", "shop.orders", "--model", root)
    finally:
        release.join()
    assert waited.code == 0, waited
    assert [r[0] for r in stored(root)] == [1]

    monkeypatch.setattr(cdc_stream, "ACTIVE_SECONDS", 0.5)
    execute(source, "insert into orders values (2, 'two', 1, now(), null, null)")
    holder = _hold_slot(source)
    try:
        busy = ferry("run", "shop.orders", "--model", root)
    finally:
        holder.close()
    assert busy.code != 0 and "is active for PID" in busy.out + busy.err, busy
    assert ferry("run", "shop.orders", "--model", root).code == 0
    assert [r[0] for r in stored(root)] == [1, 2]
