"""`ferry gc`: retention drops old versions without ever breaking verify for the kept ones."""

from __future__ import annotations

import pytest

from dataferry.errors import StoreError
from dataferry.store.gc import collect
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders


def verified(shop: StoreFixture) -> VerifyReport:
    report = VerifyReport()
    verify_dataset(shop.dataset("shop.orders"), report, deep=True)
    assert report.ok, report.problems
    return report


def test_keep_drops_old_versions_and_their_files(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1, 11)))                 # 1
    shop.publish("shop.orders", orders(range(11, 21)), mode="append")  # 2
    shop.publish("shop.orders", orders(range(21, 31)))                # 3: replace
    shop.publish("shop.orders", orders(range(31, 41)), mode="append")  # 4
    dataset = shop.dataset("shop.orders")
    result = collect(dataset, shop.store.keys, keep=2)
    assert result.dropped_versions == [1, 2]
    assert len(result.deleted_files) == 2 and result.freed_bytes > 0
    assert dataset.version_numbers() == [3, 4]
    table = dataset.reader(dataset.resolve(3)).read_all()
    assert sorted(table["id"].to_pylist()) == list(range(21, 31))
    assert dataset.resolve(None).manifest.rows == 20
    with pytest.raises(StoreError, match="removed by `ferry gc`"):
        dataset.active_files(1)
    verified(shop)
    # The chain goes on after the checkpoint, and a second gc moves it forward.
    shop.publish("shop.orders", orders(range(41, 45)), mode="append")  # 5
    assert collect(dataset, shop.store.keys, keep=1).dropped_versions == [3, 4]
    assert verified(shop).checked_versions == 1
    assert dataset.resolve(None).manifest.rows == 24


def test_files_carried_from_before_the_checkpoint_are_still_verified(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1, 11)))
    shop.publish("shop.orders", orders(range(11, 21)), mode="append")
    shop.publish("shop.orders", orders(range(21, 31)), mode="append")
    dataset = shop.dataset("shop.orders")
    collect(dataset, shop.store.keys, keep=1)
    assert verified(shop).checked_files == 3  # version 3 still reads the files of 1 and 2
    first = dataset.checkpoint()
    assert first is not None and first.first_version == 3
    target = dataset.path / first.files[0].path
    target.write_bytes(target.read_bytes()[:-1])
    report = VerifyReport()
    verify_dataset(dataset, report)
    assert [p.file for p in report.problems] == [first.files[0].path]


def test_a_forged_checkpoint_is_refused(shop: StoreFixture) -> None:
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from dataferry.store.manifest import Checkpoint, signed_checkpoint

    shop.publish("shop.orders", orders(range(1, 5)))
    shop.publish("shop.orders", orders(range(5, 9)), mode="append")
    dataset = shop.dataset("shop.orders")
    collect(dataset, shop.store.keys, keep=1)
    envelope = json.loads(dataset.checkpoint_path.read_bytes())
    checkpoint = Checkpoint.from_bytes(json.dumps(envelope["checkpoint"]).encode())
    dataset.checkpoint_path.write_bytes(signed_checkpoint(checkpoint, Ed25519PrivateKey.generate()))
    report = VerifyReport()
    verify_dataset(dataset, report)
    assert any("checkpoint signature" in p.problem for p in report.problems)


def test_retention_from_the_model_and_keep_must_be_positive(shop: StoreFixture,
                                                           ferry: object) -> None:
    shop.publish("shop.orders", orders([1]))
    with pytest.raises(StoreError, match="at least 1"):
        collect(shop.dataset("shop.orders"), shop.store.keys, keep=0)
