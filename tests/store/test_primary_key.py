"""Every version of a keyed dataset has unique, non-null keys, whatever mode made it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from dataferry.errors import StoreError
from dataferry.store.primary_key import KeyViolation
from dataferry.store.publish import publish
from tests.store.conftest import StoreFixture, orders


def _ids(shop: StoreFixture, ref: str = "shop.orders") -> list[int]:
    dataset = shop.dataset(ref)
    return sorted(dataset.reader(dataset.resolve(None)).read_all().column("id").to_pylist())


def test_a_duplicate_key_in_a_snapshot_is_refused_with_one_line(shop: StoreFixture) -> None:
    data = orders([*range(1, 10_001), 17])
    with pytest.raises(KeyViolation) as info:
        shop.publish("shop.orders", data)
    message = str(info.value)
    assert message.count("\n") == 0
    assert "shop.orders: primary key (id) is not unique: 1 key appears in more than one " \
           "row (2 rows), e.g. id=17" in message
    assert info.value.public is not None and "17" not in info.value.public
    assert shop.dataset("shop.orders").version_numbers() == []


def test_appending_stored_keys_is_refused(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1, 201)))
    with pytest.raises(KeyViolation, match=r"200 keys .* \(400 rows\).*--mode merge"):
        shop.publish("shop.orders", orders(range(1, 201)), mode="append")
    assert shop.dataset("shop.orders").version_numbers() == [1]
    assert _ids(shop) == list(range(1, 201))
    shop.publish("shop.orders", orders(range(201, 203)), mode="append")
    assert _ids(shop) == list(range(1, 203))


def test_a_merge_refuses_two_different_rows_with_one_key(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1, 4)))
    twice = pa.concat_tables([orders([5], amount="1.00"), orders([5], amount="2.00")])
    with pytest.raises(KeyViolation, match=r"id=5; the data holds different rows"):
        shop.publish("shop.orders", twice, mode="merge")
    assert shop.dataset("shop.orders").version_numbers() == [1]


def test_a_merge_takes_the_same_row_twice_as_one(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1, 4)))
    shop.publish("shop.orders", pa.concat_tables([orders([5]), orders([5])]), mode="merge")
    assert _ids(shop) == [1, 2, 3, 5]


def _at(moment: datetime, table: pa.Table) -> pa.Table:
    return table.set_column(3, "at", pa.array([moment] * table.num_rows,
                                              pa.timestamp("us", "UTC")))


def test_an_incremental_window_keeps_the_later_row_and_refuses_a_tie(shop: StoreFixture) -> None:
    dataset, spec = shop.dataset("shop.orders"), shop.spec("shop.orders")
    shop.publish("shop.orders", orders(range(1, 4)))
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    # The row read twice (the lag re-read): the later by the cursor wins, wherever it is.
    window = pa.concat_tables([_at(late, orders([7], "9.00")), _at(early, orders([7], "8.00"))])
    publish(dataset, spec, window, keys=shop.store.keys, mode="merge", changed_by="at")
    table = dataset.reader(dataset.resolve(None)).read_all().to_pylist()
    assert [str(r["amount"]) for r in table if r["id"] == 7] == ["9.00"]
    # Two rows with one key and one cursor value: a duplicate at the source.
    tie = pa.concat_tables([_at(late, orders([8], "1.00")), _at(late, orders([8], "2.00"))])
    with pytest.raises(KeyViolation, match="different rows with the same key and the same at"):
        publish(dataset, spec, tie, keys=shop.store.keys, mode="merge", changed_by="at")
    assert dataset.version_numbers() == [1, 2]


def test_a_null_key_is_refused_even_when_declared_nullable(shop: StoreFixture) -> None:
    spec = shop.spec("shop.orders")
    loose = spec.model_copy(update={"columns": {
        **spec.columns, "id": spec.columns["id"].model_copy(update={"nullable": True})}})
    data = orders([1, 2]).set_column(0, "id", pa.array([1, None], pa.int64()))
    for mode in ("replace", "append", "merge"):
        with pytest.raises(StoreError, match=r"id.*part of the primary key"):
            publish(shop.dataset("shop.orders"), loose, data, keys=shop.store.keys,
                    mode=mode)  # type: ignore[arg-type]
        if mode == "replace":
            shop.publish("shop.orders", orders([5]))
    dataset = shop.dataset("shop.orders")
    assert dataset.version_numbers() == [1]
    stored = dataset.version(1).manifest.schema["columns"][0]
    assert stored == {"name": "id", "type": "int64", "nullable": False}


def test_a_partitioned_dataset_keeps_its_keys_unique(shop: StoreFixture) -> None:
    data = pa.table({"id": [1, 2], "day": [date(2026, 1, 1), date(2026, 1, 2)]})
    shop.publish("shop.parted", data)
    with pytest.raises(KeyViolation, match="id=2"):
        shop.publish("shop.parted", pa.table({"id": [2], "day": [date(2026, 1, 3)]}),
                     mode="append")
    assert shop.dataset("shop.parted").version_numbers() == [1]
