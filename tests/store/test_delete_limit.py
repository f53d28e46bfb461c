"""A replace that would remove most of a dataset's rows is refused with the numbers."""

from __future__ import annotations

import pytest

from dataferry.store.delete_limit import DeleteRefused
from dataferry.store.publish import publish
from tests.store.conftest import StoreFixture, orders


def _replace(shop: StoreFixture, ids: range, ratio: float | None = 0.5) -> int:
    return publish(shop.dataset("shop.orders"), shop.spec("shop.orders"), orders(ids),
                   keys=shop.store.keys, max_delete_ratio=ratio).rows


def test_an_empty_snapshot_of_a_full_dataset_is_refused(shop: StoreFixture) -> None:
    _replace(shop, range(1, 101))
    with pytest.raises(DeleteRefused) as info:
        _replace(shop, range(0))
    assert str(info.value) == (
        "shop.orders: this version would remove 100 of 100 rows (100%: 100 rows before, 0 "
        "after), more than its max_delete_ratio of 0.5 allows; if the source really lost "
        "those rows, run again with --allow-delete (or raise max_delete_ratio for the "
        "dataset); nothing was published")
    assert info.value.public == str(info.value)  # counts only, no row values
    dataset = shop.dataset("shop.orders")
    assert dataset.version_numbers() == [1]
    assert dataset.reader(dataset.resolve(None)).read_all().num_rows == 100


def test_the_ratio_is_a_limit_not_a_rule(shop: StoreFixture) -> None:
    assert _replace(shop, range(0)) == 0  # a first version is never refused
    assert _replace(shop, range(1, 101)) == 100  # growing from nothing removes nothing
    assert _replace(shop, range(1, 51)) == 50  # exactly half: allowed
    with pytest.raises(DeleteRefused, match="remove 26 of 50 rows"):
        _replace(shop, range(1, 25))
    assert _replace(shop, range(1, 25), ratio=0.6) == 24
    assert _replace(shop, range(0), ratio=None) == 0  # --allow-delete


def test_merge_and_append_are_not_limited(shop: StoreFixture) -> None:
    _replace(shop, range(1, 11))
    shop.publish("shop.orders", orders([11]), mode="append")
    shop.publish("shop.orders", orders([1], amount="2.00"), mode="merge")
    assert shop.dataset("shop.orders").version_numbers() == [1, 2, 3]
