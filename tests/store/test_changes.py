"""What a sink gets to move from one version to another: rows, change sets, added rows."""

from __future__ import annotations

import pyarrow as pa

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN
from dataferry.store.changes import added_rows, change_set, version_rows
from dataferry.store.storage import store_schema
from tests.store.conftest import StoreFixture, orders

COLUMNS = ["id", "customer", "amount"]


def schema(extra: pa.Field | None = None) -> pa.Schema:
    base = store_schema([("id", "int64", False), ("customer", "string", True),
                         ("amount", "decimal(12,2)", True)])
    return base.append(extra) if extra is not None else base


def rows(reader: pa.RecordBatchReader) -> list[dict[str, object]]:
    return sorted(reader.read_all().to_pylist(), key=lambda r: (str(r.get(OP_COLUMN)), r["id"]))


def test_change_sets_between_versions(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders([1, 2, 3]))
    shop.publish("shop.orders", orders([2, 4], amount="9.00"), mode="merge")
    shop.publish("shop.orders", orders([2, 4], amount="9.00"))  # 1 and 3 removed
    dataset = shop.dataset("shop.orders")
    one, two, three = (dataset.version(n) for n in (1, 2, 3))
    op = pa.field(OP_COLUMN, pa.string(), False)
    first = rows(change_set(dataset, None, one, COLUMNS, ["id"], None, schema(op)))
    assert [(r[OP_COLUMN], r["id"]) for r in first] == [("upsert", 1), ("upsert", 2), ("upsert", 3)]
    second = rows(change_set(dataset, one, two, COLUMNS, ["id"], None, schema(op)))
    assert [(r[OP_COLUMN], r["id"]) for r in second] == [("upsert", 2), ("upsert", 4)]
    third = rows(change_set(dataset, two, three, COLUMNS, ["id"], None, schema(op)))
    assert [(r[OP_COLUMN], r["id"], r["customer"]) for r in third] == [
        ("delete", 1, None), ("delete", 3, None)]
    assert rows(change_set(dataset, three, three, COLUMNS, ["id"], None, schema(op))) == []


def test_where_moves_rows_in_and_out(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders([1, 2], amount="1.00"))
    shop.publish("shop.orders", orders([1], amount="5.00"), mode="merge")
    dataset = shop.dataset("shop.orders")
    op = pa.field(OP_COLUMN, pa.string(), False)
    where = "amount > 2"
    entering = rows(change_set(dataset, dataset.version(1), dataset.version(2), COLUMNS, ["id"],
                               where, schema(op)))
    assert [(r[OP_COLUMN], r["id"]) for r in entering] == [("upsert", 1)]
    full = rows(version_rows(dataset, dataset.version(2), COLUMNS, where, schema()))
    assert [r["id"] for r in full] == [1]


def test_added_rows_with_and_without_a_key(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders([1, 2]))
    shop.publish("shop.orders", orders([3]), mode="append")
    dataset = shop.dataset("shop.orders")
    tag = pa.field(VERSION_COLUMN, pa.int64(), False)
    got = rows(added_rows(dataset, dataset.version(1), dataset.version(2), COLUMNS, ["id"], None,
                          schema(tag)))
    assert [(r["id"], r[VERSION_COLUMN]) for r in got] == [(3, 2)]
    shop.publish("shop.events", pa.table({"name": ["a"], "value": [1.0]}))
    shop.publish("shop.events", pa.table({"name": ["a"], "value": [1.0]}), mode="append")
    events = shop.dataset("shop.events")
    event_schema = store_schema([("name", "string", True), ("value", "float64", True)]).append(tag)
    keyless = added_rows(events, events.version(1), events.version(2), ["name", "value"], [],
                         None, event_schema).read_all()
    assert keyless.num_rows == 1 and keyless[VERSION_COLUMN].to_pylist() == [2]


def test_change_sets_of_wide_rows(shop: StoreFixture) -> None:
    """Rows past ``WIDE_ROW_BYTES`` are compared by digest: the same change set."""
    from dataferry.store.batching import WIDE_ROW_BYTES, row_width

    long = 2 * WIDE_ROW_BYTES

    def wide(ids: list[int], changed: int | None = None) -> pa.Table:
        table = orders(ids)
        texts = [None if i == 3 else ("x" if i == changed else "y") * long + str(i)
                 for i in ids]
        return table.set_column(1, "customer", pa.array(texts, pa.string()))

    shop.publish("shop.orders", wide([1, 2, 3, 4, 5]))
    shop.publish("shop.orders", wide([1, 2, 3, 5, 6], changed=2))  # 4 gone, 6 new, 2 changed
    shop.publish("shop.orders", wide([1, 2, 5, 6], changed=2).set_column(  # 5: short now
        1, "customer", pa.array(["y" * long + "1", "x" * long + "2",
                                 "z", "y" * long + "6"])), mode="merge")
    dataset = shop.dataset("shop.orders")
    one, two, three = (dataset.version(n) for n in (1, 2, 3))
    assert row_width(dataset.path, dataset.active_files(3)) > WIDE_ROW_BYTES
    op = pa.field(OP_COLUMN, pa.string(), False)
    second = rows(change_set(dataset, one, two, COLUMNS, ["id"], None, schema(op)))
    assert [(r[OP_COLUMN], r["id"]) for r in second] == [
        ("delete", 4), ("upsert", 2), ("upsert", 6)]
    assert second[1]["customer"] == "x" * long + "2"
    third = rows(change_set(dataset, two, three, COLUMNS, ["id"], None, schema(op)))
    assert [(r[OP_COLUMN], r["id"], r["customer"]) for r in third] == [("upsert", 5, "z")]
    filtered = rows(change_set(dataset, one, three, COLUMNS, ["id"], "id > 2", schema(op)))
    assert [(r[OP_COLUMN], r["id"]) for r in filtered] == [
        ("delete", 4), ("upsert", 5), ("upsert", 6)]  # 3 (null) stays, as merges keep rows
    tag = pa.field(VERSION_COLUMN, pa.int64(), False)
    appended = rows(added_rows(dataset, one, two, COLUMNS, ["id"], None, schema(tag)))
    assert [(r["id"], r[VERSION_COLUMN]) for r in appended] == [(2, 2), (6, 2)]
    from dataferry.store.diff import diff_versions

    found = diff_versions(dataset, 1, 2)  # ferry diff compares them the same way
    assert (found.added, found.removed, found.changed) == (1, 1, 1)
    assert [(r["change"], r["key"]["id"]) for r in found.rows] == [
        ("added", 6), ("changed", 2), ("removed", 4)]
