"""Publishing versions and reading them back, through the Python API."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dataferry.errors import StoreError
from dataferry.store.diff import diff_versions
from dataferry.store.quality import QualityError
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders


def rows(fixture: StoreFixture, ref: str, version: int | None = None) -> list[dict[str, object]]:
    dataset = fixture.dataset(ref)
    table = dataset.reader(dataset.resolve(version)).read_all()
    return sorted(table.to_pylist(), key=lambda r: str(r.get("id", r.get("name"))))


def test_replace_append_merge_and_time_travel(shop: StoreFixture) -> None:
    first = shop.publish("shop.orders", orders(range(1, 4)))
    assert (first.version, first.rows, first.added_rows, first.removed_rows) == (1, 3, 3, 0)
    second = shop.publish("shop.orders", orders(range(4, 6)), mode="append")
    assert (second.version, second.rows, second.added_rows) == (2, 5, 2)
    third = shop.publish("shop.orders", orders([2, 9], amount="7.00"), mode="merge")
    assert (third.version, third.rows) == (3, 6)
    assert (third.added_rows, third.removed_rows) == (2, 1)  # 1 inserted + 1 updated
    now = {r["id"]: r["amount"] for r in rows(shop, "shop.orders")}
    assert now == {1: Decimal("1.50"), 2: Decimal("7.00"), 3: Decimal("1.50"),
                   4: Decimal("1.50"), 5: Decimal("1.50"), 9: Decimal("7.00")}
    assert [r["id"] for r in rows(shop, "shop.orders", 1)] == [1, 2, 3]
    assert len(rows(shop, "shop.orders", 2)) == 5
    fourth = shop.publish("shop.orders", orders([7]), max_delete_ratio=None)  # --allow-delete
    assert (fourth.rows, fourth.removed_rows) == (1, 6)
    assert [r["id"] for r in rows(shop, "shop.orders")] == [7]
    assert [r["id"] for r in rows(shop, "shop.orders", 1)] == [1, 2, 3]
    report = VerifyReport()
    verify_dataset(shop.dataset("shop.orders"), report)
    assert report.ok, report.problems


def test_versions_chain_and_are_signed(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(3)))
    shop.publish("shop.orders", orders(range(3, 5)), mode="append")
    dataset = shop.dataset("shop.orders")
    one, two = dataset.version(1), dataset.version(2)
    assert one.manifest.prev is None and two.manifest.prev == one.hash
    assert one.manifest.dataset_id == dataset.genesis().dataset_id
    assert two.signature.key in dataset.genesis().keys
    assert one.raw.startswith(b'{"added_rows":3,')  # canonical: sorted keys, no spaces


def test_a_failing_check_blocks_the_version(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1, 4)))
    with pytest.raises(QualityError) as info:
        shop.publish("shop.orders", orders([8, 9], amount="-2.00"), mode="append")
    assert "range" in str(info.value) and "8" in str(info.value)
    dataset = shop.dataset("shop.orders")
    assert dataset.version_numbers() == [1]
    assert [r["id"] for r in rows(shop, "shop.orders")] == [1, 2, 3]
    assert DeltaTable(str(dataset.path)).to_pyarrow_table().num_rows == 3
    again = shop.publish("shop.orders", orders([10]), mode="append")
    assert again.version == 2 and again.rows == 4
    report = VerifyReport()
    verify_dataset(dataset, report)
    assert report.ok, report.problems


def test_negative_amount_fails_the_range_check(shop: StoreFixture) -> None:
    with pytest.raises(QualityError, match="range"):
        shop.publish("shop.orders", orders([1], amount="-3.00"))
    assert shop.dataset("shop.orders").version_numbers() == []
    assert shop.publish("shop.orders", orders([1])).version == 1


def test_data_that_does_not_fit_the_declared_type(shop: StoreFixture) -> None:
    bad = orders([1, 2]).set_column(2, "amount", pa.array(["1.5", "12345678901.234"]))
    with pytest.raises(StoreError) as info:
        shop.publish("shop.orders", bad)
    assert "amount" in str(info.value) and "shop.orders" in str(info.value)
    assert shop.dataset("shop.orders").version_numbers() == []


def test_merge_needs_a_primary_key(shop: StoreFixture) -> None:
    table = pa.table({"name": ["a"], "value": [1.0]})
    with pytest.raises(StoreError, match="primary key"):
        shop.publish("shop.events", table, mode="merge")


def test_partitioned_dataset(shop: StoreFixture) -> None:
    from datetime import date

    data = pa.table({"id": [1, 2, 3], "day": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 2)]})
    shop.publish("shop.parted", data)
    shop.publish("shop.parted", pa.table({"id": [2], "day": [date(2026, 1, 3)]}), mode="merge")
    assert {(r["id"], r["day"].day) for r in rows(shop, "shop.parted")} == {(1, 1), (2, 3), (3, 2)}
    report = VerifyReport()
    verify_dataset(shop.dataset("shop.parted"), report)
    assert report.ok, report.problems
    with pytest.raises(QualityError, match="day"):  # checks see the partition column too
        shop.publish("shop.parted", pa.table({"id": [5], "day": [date(2020, 1, 1)]}), mode="append")


def test_other_tools_read_the_same_table(shop: StoreFixture) -> None:
    import polars

    shop.publish("shop.orders", orders(range(1, 4)))
    shop.publish("shop.orders", orders([4]), mode="append")
    dataset = shop.dataset("shop.orders")
    table = DeltaTable(str(dataset.path))
    assert table.protocol().min_reader_version == 1
    assert sorted(table.to_pyarrow_table()["id"].to_pylist()) == [1, 2, 3, 4]
    assert sorted(DeltaTable(str(dataset.path), version=0).to_pyarrow_table()["id"].to_pylist()) == [1, 2, 3]
    files = dataset.file_paths(dataset.version(1))
    listed = ", ".join(f"'{f}'" for f in files)
    assert duckdb.connect().execute(f"select sum(id) from read_parquet([{listed}])").fetchone() == (6,)
    frame = polars.read_delta(str(dataset.path))
    assert sorted(frame["id"].to_list()) == [1, 2, 3, 4]
    assert sorted(polars.read_parquet(files)["id"].to_list()) == [1, 2, 3]


def test_diff_by_primary_key(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders([1, 2, 3]))
    shop.publish("shop.orders", orders([3, 4], amount="9.99"), mode="merge")
    shop.publish("shop.orders", orders([3, 4], amount="9.99"))
    diff = diff_versions(shop.dataset("shop.orders"), 1, 2)
    assert (diff.added, diff.removed, diff.changed) == (1, 0, 1)
    assert {(r["change"], r["key"]["id"]) for r in diff.rows} == {("added", 4), ("changed", 3)}
    diff = diff_versions(shop.dataset("shop.orders"), 2, 3)
    assert (diff.added, diff.removed, diff.changed) == (0, 2, 0)


def test_keys_stay_outside_the_store(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders([1]))
    [info] = shop.store.keys.keys()
    assert info.team == "shop" and info.fingerprint.startswith("SHA256:")
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.path.parent.stat().st_mode) == 0o700
    assert not any(p.suffix == ".ed25519" for p in shop.store.root.rglob("*"))


def test_a_copied_store_verifies_with_only_its_genesis(shop: StoreFixture, tmp_path: object) -> None:
    import shutil
    from pathlib import Path

    shop.publish("shop.orders", orders([1, 2]))
    shop.publish("shop.orders", orders([3]), mode="append")
    copy = Path(str(tmp_path)) / "elsewhere"
    shutil.copytree(shop.store.root, copy)
    from dataferry.store.dataset import DatasetStore

    report = VerifyReport()
    verify_dataset(DatasetStore(copy, "shop.orders"), report)
    assert report.ok and report.checked_files == 2


@pytest.mark.parametrize("mode", ["merge", "replace", "append"])
def test_bad_data_is_named_in_every_mode(shop: StoreFixture, mode: str) -> None:
    from dataferry.store.conform import SchemaError

    shop.publish("shop.orders", orders([1]))
    bad = orders([2, 3]).set_column(2, "amount", pa.array(["1.5", "x"]))
    with pytest.raises(SchemaError) as info:
        shop.publish("shop.orders", bad, mode=mode)
    assert info.value.column == "amount" and info.value.key == {"id": 3}
    assert shop.dataset("shop.orders").version_numbers() == [1]
    assert shop.publish("shop.orders", orders([4]), mode="append").version == 2


def test_an_identical_snapshot_publishes_nothing(shop: StoreFixture) -> None:
    first = shop.publish("shop.orders", orders([1, 2, 3]))
    again = shop.publish("shop.orders", orders([1, 2, 3]))
    assert again.unchanged and again.version == first.version == 1
    assert len(list(shop.dataset("shop.orders").path.glob("*.parquet"))) == 1
    changed = shop.publish("shop.orders", orders([1, 2, 4]))
    assert not changed.unchanged and changed.version == 2


def test_diff_sees_the_partition_columns(shop: StoreFixture) -> None:
    from datetime import date

    shop.publish("shop.parted", pa.table({"id": [1, 2], "day": [date(2026, 1, 1)] * 2}))
    shop.publish("shop.parted", pa.table({"id": [2], "day": [date(2026, 1, 3)]}), mode="merge")
    diff = diff_versions(shop.dataset("shop.parted"), 1, 2)
    assert (diff.added, diff.removed, diff.changed) == (0, 0, 1)


def test_a_teams_first_key_made_by_many_threads_at_once_is_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from dataferry.store.keys import KeyStore, public_bytes

    keys = KeyStore(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: public_bytes(keys.signing_key("shop")), range(32)))
    assert len(set(made)) == 1
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["shop.ed25519"]


def test_a_key_the_dataset_does_not_allow_publishes_nothing(shop: StoreFixture) -> None:
    """Two workers with different keys for one team: the second is refused before it
    writes, instead of publishing a version that no `ferry verify` or clone accepts."""
    shop.publish("shop.orders", orders(range(5)))
    keys = shop.store.keys
    (keys.directory / "shop.ed25519").unlink()
    keys.signing_key("shop")  # another machine's key for the same team
    files_before = sorted(p.name for p in shop.dataset("shop.orders").path.rglob("*"))
    with pytest.raises(StoreError, match=r"may not sign this dataset.*same team keys"):
        shop.publish("shop.orders", orders(range(6)))
    dataset = shop.dataset("shop.orders")
    assert dataset.head_number() == 1
    assert sorted(p.name for p in dataset.path.rglob("*")) == files_before
    report = VerifyReport()
    verify_dataset(dataset, report, deep=True)
    assert report.ok, report.problems
