"""``Store.heads``: every dataset's newest published version from one walk of the store,
as ``DatasetStore.head_number`` reads each (what a scheduler tick decides on)."""

from __future__ import annotations

from tests.store.conftest import StoreFixture, orders


def test_heads_are_what_each_dataset_says(shop: StoreFixture) -> None:
    assert shop.store.heads() == {}  # no store directory yet
    for version in range(1, 12):  # 11 versions: 10 and 11 sort after 9 as numbers
        shop.publish("shop.orders", orders([version]), mode="append")
    parted = shop.dataset("shop.parted")
    parted.sig.joinpath("m").mkdir(parents=True)  # a dataset with no version yet
    orders_m = shop.dataset("shop.orders").sig / "m"
    (orders_m / "000000000012.json").write_bytes(b"{}")  # written, never signed: not published
    (shop.store.root / "stray-file").write_text("not a team")
    heads = shop.store.heads()
    assert heads == {"shop.orders": 11}
    assert heads == {ref: head for ref in shop.index.datasets
                     if (head := shop.dataset(ref).head_number()) is not None}
    shop.publish("shop.orders", orders([12]), mode="append")
    assert shop.store.heads() == {"shop.orders": 12}  # each call lists again
