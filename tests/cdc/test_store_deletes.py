"""A merge with deleted keys (a change log's deletes): what the store and readers see."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.errors import StoreError
from dataferry.store.changes import change_set
from dataferry.store.publish import Published, publish
from tests.store.conftest import StoreFixture, orders
from tests.store.test_merge_on_read import delta_rows, store_rows, verified


def keys(ids: list[int]) -> pa.RecordBatchReader:
    return pa.table({"id": pa.array(ids, pa.int64())}).to_reader()


def merge(shop: StoreFixture, upserts: pa.Table, deleted: list[int] | None) -> Published:
    return publish(shop.dataset("shop.orders"), shop.spec("shop.orders"), upserts,
                   keys=shop.store.keys, mode="merge",
                   deleted_keys=None if deleted is None else keys(deleted))


def test_deleted_keys_leave_the_version_and_readers_agree(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1000)))
    # 5 is deleted and upserted in one read: the upsert wins; 9999 was never stored
    published = merge(shop, orders([5, 2000], amount="7.00"), [1, 2, 3, 5, 9999])
    assert (published.rows, published.added_rows, published.removed_rows) == (998, 2, 4)
    expected = {i: Decimal("1.50") for i in range(1000) if i not in (1, 2, 3)}
    expected.update({5: Decimal("7.00"), 2000: Decimal("7.00")})
    assert store_rows(shop) == delta_rows(shop) == expected
    assert verified(shop).ok


def test_deletes_alone_make_a_version_and_nothing_deleted_makes_none(
        shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(10)))
    published = merge(shop, orders([]), [4])
    assert (published.version, published.rows, published.removed_rows) == (2, 9, 1)
    assert 4 not in store_rows(shop) and delta_rows(shop) == store_rows(shop)
    again = merge(shop, orders([]), [4, 77])  # already gone, never there
    assert again.unchanged and again.version == 2


def test_sinks_get_the_deletes_as_delete_operations(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(10)))
    merge(shop, orders([3], amount="2.00"), [6, 7])
    dataset = shop.dataset("shop.orders")
    schema = pa.schema([("id", pa.int64()), ("amount", pa.decimal128(12, 2)),
                        ("_ferry_op", pa.string())])
    changes = change_set(dataset, dataset.version(1), dataset.version(2), ["id", "amount"],
                         ["id"], None, schema).read_all().to_pylist()
    assert sorted((c["id"], c["_ferry_op"]) for c in changes) == [
        (3, "upsert"), (6, "delete"), (7, "delete")]


def test_deleted_keys_need_a_merge_and_the_key_columns(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(3)))
    with pytest.raises(StoreError, match="deleted keys go with a merge, not a replace"):
        publish(shop.dataset("shop.orders"), shop.spec("shop.orders"), orders([1]),
                keys=shop.store.keys, mode="replace", deleted_keys=keys([1]))
    wrong = pa.table({"customer": ["c1"]}).to_reader()
    with pytest.raises(StoreError, match="lack the primary-key column"):
        publish(shop.dataset("shop.orders"), shop.spec("shop.orders"), orders([]),
                keys=shop.store.keys, mode="merge", deleted_keys=wrong)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sets(st.integers(0, 40), max_size=8),
                          st.sets(st.integers(0, 40), max_size=8)), min_size=1, max_size=4))
def test_a_chain_of_change_sets_matches_applying_them_in_order(
        shop: StoreFixture, steps: list[tuple[set[int], set[int]]]) -> None:
    dataset = shop.dataset("shop.orders")
    if dataset.exists():  # hypothesis reuses the fixture: start each example over
        import shutil

        shutil.rmtree(dataset.path)
    shop.publish("shop.orders", orders(range(20)))
    expected = {i: Decimal("1.50") for i in range(20)}
    for n, (upserted, deleted) in enumerate(steps):
        amount = f"{n + 2}.00"
        gone = deleted - upserted  # the contract: a key deleted then re-inserted is upserted
        merge(shop, orders(sorted(upserted), amount=amount), sorted(gone))
        for key in gone:
            expected.pop(key, None)
        expected.update({key: Decimal(amount) for key in upserted})
        assert store_rows(shop) == delta_rows(shop) == expected
