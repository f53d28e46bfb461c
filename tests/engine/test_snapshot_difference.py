"""A snapshot ingest of a keyed dataset publishes the keyed difference, not a new table.

The source is a real SQLite database. After random inserts, updates and deletes at the
source, the version a snapshot publishes must hold exactly those changes: ``ferry diff``
and the change set deliveries read name exactly the changed keys, the version's new
files hold only the new and changed rows, and the version reads equal to the source. A
snapshot that finds nothing different publishes nothing; ``--full`` re-reads of an
incremental dataset behave the same; deliveries (PostgreSQL sink) move only the changes.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.engine.context import RunContext
from dataferry.engine.ingest import ingest
from dataferry.metadata.outbox import Outbox
from dataferry.model.load import load_model
from dataferry.store.changes import change_set
from dataferry.store.dataset import DatasetStore
from dataferry.store.diff import diff_versions
from dataferry.store.scan import read_rows
from dataferry.store.storage import store_schema
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.conftest import Result, write_files
from tests.connectors.pg_helpers import temporary_database

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      items:
        table: items
        primary_key: [id]
        max_delete_ratio: 1
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
          qty: {{type: int64}}
      orders:
        table: orders
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          amount: {{type: int64}}
          updated_at: {{type: string, nullable: false}}
{consumers}"""

Rows = dict[int, tuple[str | None, int | None]]
"""id -> (name, qty): a source table's content."""


def _model(root: Path, consumers: str = "") -> Path:
    write_files(root, {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM.format(consumers=consumers),
    })
    with sqlite3.connect(root / "shop.db") as con:
        con.execute("create table items (id integer primary key, name text, qty integer)")
        con.execute("create table orders (id integer primary key, amount integer, "
                    "updated_at text not null)")
        con.executemany("insert into orders values (?, ?, ?)",
                        [(i, i * 10, f"2026-01-01 00:{i // 60:02d}:{i % 60:02d}")
                         for i in range(1, 1001)])
    return root


def _source(root: Path, *statements: str, rows: Rows | None = None) -> None:
    with sqlite3.connect(root / "shop.db") as con:
        for statement in statements:
            con.execute(statement)
        if rows is not None:
            con.execute("delete from items")
            con.executemany("insert into items values (?, ?, ?)",
                            [(k, *v) for k, v in rows.items()])


def _stored(dataset: DatasetStore, version: int | None = None) -> Rows:
    """A version's live rows (through its deletion vectors)."""
    head = dataset.resolve(version)
    schema = store_schema([("id", "int64", False), ("name", "string", True),
                           ("qty", "int64", True)])
    table = read_rows(dataset.scans(head), schema).read_all()
    return {r["id"]: (r["name"], r["qty"]) for r in table.to_pylist()}


def _files_added(dataset: DatasetStore, version: int) -> int:
    """Rows in the data files ``version`` wrote (a file listed again with a new deletion
    vector is not written again)."""
    before = {f.path for f in dataset.active_files(version - 1)}
    return sum(f.rows for f in dataset.version(version).manifest.files if f.path not in before)


# Small key and value ranges, so that random changes hit stored keys and, often, write the
# value that is already there (an update that changes nothing).
ids = st.integers(min_value=1, max_value=60)
values = st.tuples(st.sampled_from([None, "a", "b", "é"]),
                   st.one_of(st.none(), st.integers(min_value=-2, max_value=2)))
tables = st.dictionaries(ids, values, max_size=40)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=tables, changes=st.lists(st.tuples(
    st.dictionaries(ids, values, max_size=8),  # inserts and updates (upserts)
    st.sets(ids, max_size=8)),                  # deletes
    min_size=1, max_size=3))
def test_random_snapshot_changes_publish_exactly_the_keyed_difference(
        first: Rows, changes: list[tuple[Rows, set[int]]]) -> None:
    with tempfile.TemporaryDirectory() as work:
        root = _model(Path(work) / "model")
        _source(root, rows=first)
        context = RunContext.from_loaded(load_model(root))
        dataset = context.store.dataset("shop.items")
        result = ingest(context, "shop.items")
        assert result.published is not None and result.published.version == 1
        assert _stored(dataset) == first
        current = dict(first)
        for upserts, deletes in changes:
            after = {k: v for k, v in {**current, **upserts}.items() if k not in deletes}
            _source(root, rows=after)
            added = {k for k in after if k not in current}
            removed = {k for k in current if k not in after}
            changed = {k for k in after if k in current and after[k] != current[k]}
            head = dataset.head().number
            published = ingest(context, "shop.items").published
            if not (added or removed or changed):
                assert published is None  # nothing different: no version
                assert dataset.head().number == head
                continue
            assert published is not None and published.version == head + 1
            new = published.version
            assert (published.added_rows, published.removed_rows) == (
                len(added) + len(changed), len(removed) + len(changed))
            diff = diff_versions(dataset, head, new, limit=1000)
            assert (diff.added, diff.removed, diff.changed) == (
                len(added), len(removed), len(changed))
            by_change = {(r["change"], r["key"]["id"]) for r in diff.rows}
            assert by_change == ({("added", k) for k in added} | {("removed", k) for k in removed}
                                 | {("changed", k) for k in changed})
            # What a merge delivery reads: the changed rows with their values, the deletes.
            schema = store_schema([("id", "int64", False), ("name", "string", True),
                                   ("qty", "int64", True)]).append(
                pa.field("_ferry_op", pa.string(), False))
            delivered = change_set(dataset, dataset.version(head), dataset.version(new),
                                   ["id", "name", "qty"], ["id"], None, schema).read_all()
            ops = {(r["id"], r["_ferry_op"]): (r["name"], r["qty"])
                   for r in delivered.to_pylist()}
            assert ops == ({(k, "upsert"): after[k] for k in added | changed}
                           | {(k, "delete"): (None, None) for k in removed})
            assert _stored(dataset) == after
            assert dataset.head().manifest.rows == len(after)
            current = after
        report = VerifyReport()
        verify_dataset(dataset, report)
        assert report.ok, report.problems


def _ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def _log(root: Path, ferry: Callable[..., Result], ref: str) -> list[dict[str, Any]]:
    return list(json.loads(_ok(ferry("log", ref, "--model", root, "--json")).out))


def _statuses(result: Result) -> dict[str, tuple[str, int]]:
    return {r["job"]: (r["status"], r["rows"]) for r in json.loads(result.out)}


def test_an_unchanged_snapshot_publishes_nothing(tmp_path: Path,
                                                 ferry: Callable[..., Result]) -> None:
    root = _model(tmp_path / "model")
    _source(root, rows={i: (f"n{i}", i) for i in range(1, 2001)})
    _ok(ferry("run", "shop.items", "--model", root))
    _source(root, "update items set name = 'n1' where id = 1")  # the value it has: no change
    again = _ok(ferry("run", "shop.items", "--model", root, "--json"))
    assert _statuses(again)["ingest:shop.items"][0] == "unchanged"
    assert [e["version"] for e in _log(root, ferry, "shop.items")] == [1]
    _source(root, "update items set qty = 0 where id in (1, 2)", "delete from items where id = 3",
            "insert into items values (5000, 'new', 1)")
    _ok(ferry("run", "shop.items", "--model", root))
    newest = _log(root, ferry, "shop.items")[0]
    assert (newest["version"], newest["rows"], newest["added"], newest["removed"]) == (
        2, 2000, 3, 3)  # 2 changed + 1 added; 2 changed + 1 deleted
    diff = json.loads(_ok(ferry("diff", "shop.items", "1", "2", "--model", root, "--json")).out)
    assert (diff["added"], diff["removed"], diff["changed"]) == (1, 1, 2)
    # Stored merge-on-read: the version wrote one file with the 3 new and changed rows; the
    # 2,000-row file stays, with a deletion vector for the 3 rows it no longer has.
    context = RunContext.from_loaded(load_model(root))
    dataset = context.store.dataset("shop.items")
    assert _files_added(dataset, 2) == 3
    assert dataset.version(2).manifest.mode == "replace"
    # Its version.published event says what changed (counts only, never a key).
    events = [e.data for e in Outbox(context.metadata).after(0)
              if e.type == "io.dataferry.dataset.version.published"]
    assert [(e["version"], e["rows"], e["added"], e["removed"]) for e in events] == [
        (1, 2000, 2000, 0), (2, 2000, 3, 3)]
    context.close()
    assert _stored(dataset) == {**{i: (f"n{i}", i) for i in range(4, 2001)},
                                1: ("n1", 0), 2: ("n2", 0), 5000: ("new", 1)}


def test_a_full_reread_of_an_incremental_dataset_publishes_only_what_differs(
        tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = _model(tmp_path / "model")
    _ok(ferry("run", "shop.orders", "--model", root))
    # As in the demo: an incremental merge, so the table is two files with a deletion
    # vector, which a full re-read cannot reproduce byte for byte.
    _source(root, "update orders set amount = 0, updated_at = '2026-02-01 00:00:00' "
                  "where id = 3", "insert into orders values (1001, 1, '2026-02-01 00:00:00')")
    _ok(ferry("run", "shop.orders", "--model", root))
    full = _ok(ferry("run", "shop.orders", "--full", "--model", root, "--json"))
    assert _statuses(full)["ingest:shop.orders"][0] == "unchanged"
    assert [e["version"] for e in _log(root, ferry, "shop.orders")] == [2, 1]
    # Changes an incremental read cannot see: an update that left the cursor alone, and a
    # delete. A full re-read finds them, and only them.
    _source(root, "update orders set amount = -1 where id = 7", "delete from orders where id = 8",
            "insert into orders values (2000, 5, '2025-01-01 00:00:00')")
    assert _statuses(_ok(ferry("run", "shop.orders", "--model", root, "--json")))[
        "ingest:shop.orders"][0] == "unchanged"  # below the cursor: not seen
    _ok(ferry("run", "shop.orders", "--full", "--model", root))
    newest = _log(root, ferry, "shop.orders")[0]
    assert (newest["version"], newest["rows"], newest["added"], newest["removed"]) == (
        3, 1001, 2, 2)
    diff = json.loads(_ok(ferry("diff", "shop.orders", "2", "3", "--model", root, "--json")).out)
    assert {(r["change"], r["key"]["id"]) for r in diff["rows"]} == {
        ("changed", 7), ("removed", 8), ("added", 2000)}


def test_the_delete_limit_holds_for_the_deletes_of_a_difference(
        tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = _model(tmp_path / "model")
    team = root / "teams" / "shop" / "shop.yaml"
    team.write_text(team.read_text().replace("max_delete_ratio: 1", "max_delete_ratio: 0.5"))
    _source(root, rows={i: ("x", i) for i in range(1, 101)})
    _ok(ferry("run", "shop.items", "--model", root))
    _source(root, "delete from items where id > 30", "update items set qty = 0 where id = 1")
    refused = ferry("run", "shop.items", "--model", root)
    assert refused.code == 1
    assert "would remove 70 of 100 rows" in refused.out + refused.err
    assert [e["version"] for e in _log(root, ferry, "shop.items")] == [1]
    _ok(ferry("run", "shop.items", "--allow-delete", "--model", root))
    newest = _log(root, ferry, "shop.items")[0]
    assert (newest["version"], newest["rows"], newest["added"], newest["removed"]) == (
        2, 30, 1, 71)


CONSUMERS = """\
consumers:
  warehouse:
    sink: {{kind: postgres, dsn: '{dsn}'}}
    datasets:
      - {{ref: shop.items, mode: merge, table: items_merge}}
      - {{ref: shop.items, mode: append, table: items_append}}
      - {{ref: shop.items, mode: history, table: items_history}}
      - {{ref: shop.items, mode: replace, table: items_replace}}
"""


@pytest.fixture
def warehouse() -> Iterator[str]:
    with temporary_database() as dsn:
        yield dsn


def test_deliveries_of_a_difference_move_only_the_changes(
        tmp_path: Path, ferry: Callable[..., Result], warehouse: str) -> None:
    root = _model(tmp_path / "model", CONSUMERS.format(dsn=warehouse))
    start = {i: (f"n{i}", i) for i in range(1, 1001)}
    _source(root, rows=start)
    first = _statuses(_ok(ferry("run", "shop.warehouse", "--model", root, "--json")))
    assert first["deliver:shop.warehouse:items_merge"][1] == 1000
    _source(root, "update items set qty = -1 where id in (10, 20)", "delete from items where id = 30",
            "insert into items values (5000, 'new', 1)")
    second = _statuses(_ok(ferry("run", "shop.warehouse", "--model", root, "--json")))
    assert second["ingest:shop.items"] == ("succeeded", 3)  # 2 changed + 1 added
    # merge: 3 upserts + 1 delete; append and history: the 3 new or changed rows (history
    # closes the deleted one too); replace: the whole table, as the mode says.
    assert second["deliver:shop.warehouse:items_merge"][1] == 4
    assert second["deliver:shop.warehouse:items_append"][1] == 3
    assert second["deliver:shop.warehouse:items_history"][1] == 4
    assert second["deliver:shop.warehouse:items_replace"][1] == 1000
    with sqlite3.connect(root / "shop.db") as con:
        source = sorted(con.execute("select id, name, qty from items").fetchall())
    with psycopg.connect(warehouse) as db:
        for table in ("items_merge", "items_replace"):
            assert sorted(db.execute(f"select id, name, qty from {table}").fetchall()) == source
        assert sorted(db.execute("select id, name, qty from items_history "
                                 "where valid_to is null").fetchall()) == source
        appended = db.execute("select id, qty, _ferry_version from items_append "
                              "where _ferry_version = 2 order by id").fetchall()
        assert appended == [(10, -1, 2), (20, -1, 2), (5000, 1, 2)]
    third = _statuses(_ok(ferry("run", "shop.warehouse", "--model", root, "--json")))
    assert third["ingest:shop.items"][0] == "unchanged"
    assert all(rows == 0 for job, (_, rows) in third.items() if job.startswith("deliver:"))


def test_a_duplicate_key_in_a_later_snapshot_publishes_nothing(
        tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = _model(tmp_path / "model")
    with sqlite3.connect(root / "shop.db") as con:  # a source without the key's constraint
        con.execute("drop table items")
        con.execute("create table items (id integer, name text, qty integer)")
    _source(root, rows={i: ("x", i) for i in range(1, 11)})
    _ok(ferry("run", "shop.items", "--model", root))
    _source(root, "insert into items values (4, 'again', 4)", "insert into items values (5, 'x', 5)")
    failed = ferry("run", "shop.items", "--model", root)
    assert failed.code == 1
    assert ("shop.items: primary key (id) is not unique: 2 keys appear in more than one row "
            "(4 rows), e.g. id=4") in failed.err
    assert [e["version"] for e in _log(root, ferry, "shop.items")] == [1]


@pytest.mark.parametrize("change", ["no key", "a new column"])
def test_without_a_key_or_after_a_schema_change_a_snapshot_is_a_replace(
        tmp_path: Path, ferry: Callable[..., Result], change: str) -> None:
    root = _model(tmp_path / "model")
    team = root / "teams" / "shop" / "shop.yaml"
    if change == "no key":
        team.write_text(team.read_text().replace("        primary_key: [id]\n        max_delete",
                                                 "        max_delete"))
    _source(root, rows={i: ("x", i) for i in range(1, 101)})
    _ok(ferry("run", "shop.items", "--model", root))
    _source(root, "update items set qty = 0 where id = 1")
    if change == "a new column":
        _source(root, "alter table items add column note text")
        team.write_text(team.read_text().replace(
            "          qty: {type: int64}\n", "          qty: {type: int64}\n"
            "          note: {type: string}\n", 1))
    _ok(ferry("run", "shop.items", "--model", root))
    newest = _log(root, ferry, "shop.items")[0]
    assert (newest["version"], newest["rows"], newest["added"], newest["removed"]) == (
        2, 100, 100, 100)
