"""Batches of stored rows are bounded by bytes, not only rows: wide rows come in few a batch."""

from __future__ import annotations

import os

import pyarrow as pa

from dataferry.connectors.base import OP_COLUMN
from dataferry.store.batching import BATCH_BYTES, MAX_BATCH_ROWS, batch_rows
from dataferry.store.changes import change_set, version_rows
from dataferry.store.storage import store_schema
from tests.store.conftest import StoreFixture, orders

COLUMNS = ["id", "customer", "amount"]
MIB = 1 << 20


def wide_orders(ids: range, width: int = MIB) -> pa.Table:
    """Orders whose customer is ``width`` bytes of distinct text (no dictionary pays)."""
    table = orders(ids)
    customers = pa.array([os.urandom(width // 2).hex() for _ in ids])
    return table.set_column(table.schema.get_field_index("customer"), "customer", customers)


def schema() -> pa.Schema:
    return store_schema([("id", "int64", False), ("customer", "string", True),
                         ("amount", "decimal(12,2)", True)])


def assert_bounded(batches: list[pa.RecordBatch], rows: int) -> None:
    assert sum(b.num_rows for b in batches) == rows
    assert len(batches) > 1
    assert max(b.nbytes for b in batches) <= BATCH_BYTES + 2 * MIB


def test_rows_of_a_mebibyte_come_a_few_a_batch(shop: StoreFixture) -> None:
    shop.publish("shop.orders", wide_orders(range(40)))
    dataset = shop.dataset("shop.orders")
    version = dataset.resolve(None)
    files = dataset.active_files(version.number)
    assert 8 <= batch_rows(dataset.path, files) <= 16
    # the narrow columns alone are not held back by the wide one
    assert batch_rows(dataset.path, files, ["id", "amount"]) == MAX_BATCH_ROWS

    replace = list(version_rows(dataset, version, COLUMNS, None, schema()))
    assert_bounded(replace, 40)
    merge = list(change_set(dataset, None, version, COLUMNS, ["id"], None,
                            schema().append(pa.field(OP_COLUMN, pa.string(), False))))
    assert_bounded(merge, 40)
    assert_bounded(list(dataset.reader(version)), 40)  # show, export, transforms


def test_narrow_rows_keep_large_batches(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(5_000)))
    dataset = shop.dataset("shop.orders")
    version = dataset.resolve(None)
    assert batch_rows(dataset.path, dataset.active_files(version.number)) == MAX_BATCH_ROWS
    assert [b.num_rows for b in version_rows(dataset, version, COLUMNS, None, schema())
            ] == [5_000]
