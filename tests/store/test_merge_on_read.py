"""Merges as deletion vectors: what readers inside and outside dataferry see."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.store import deletion_vectors
from dataferry.store.changes import change_set
from dataferry.store.deletion_vectors import DeletionVector
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders, publish_computed


def store_rows(shop: StoreFixture, version: int | None = None) -> dict[int, Decimal]:
    dataset = shop.dataset("shop.orders")
    table = dataset.reader(dataset.resolve(version)).read_all()
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a replaced row is still visible"
    return dict(zip(ids, table.column("amount").to_pylist(), strict=True))


def delta_rows(shop: StoreFixture, version: int | None = None) -> dict[int, Decimal]:
    """The rows delta-rs' own reader sees (it applies deletion vectors)."""
    path = str(shop.dataset("shop.orders").path)
    table = DeltaTable(path, version=version) if version is not None else DeltaTable(path)
    result = QueryBuilder().register("t", table).execute("select id, amount from t").read_all()
    return dict(zip(result.column("id").to_pylist(), result.column("amount").to_pylist(),
                    strict=True))


def verified(shop: StoreFixture) -> VerifyReport:
    report = VerifyReport()
    verify_dataset(shop.dataset("shop.orders"), report, deep=True)
    return report


def test_a_small_merge_adds_one_file_and_a_deletion_vector(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(1000)))
    changed = orders([*range(0, 1000, 100), 5000, 5001], amount="9.99")
    published = shop.publish("shop.orders", changed, mode="merge")
    assert (published.rows, published.added_rows, published.removed_rows) == (1002, 12, 10)
    head = shop.dataset("shop.orders").head()
    assert head is not None
    revised = [f for f in head.manifest.files if f.deletion_vector]
    assert len(head.manifest.files) == 2 and len(revised) == 1  # nothing rewritten
    assert revised[0].deletion_vector is not None
    assert revised[0].deletion_vector["cardinality"] == 10 and revised[0].live_rows == 990
    expected = {i: Decimal("1.50") for i in range(1000)}
    expected.update({i: Decimal("9.99") for i in [*range(0, 1000, 100), 5000, 5001]})
    assert store_rows(shop) == delta_rows(shop) == expected
    polars = pl.read_delta(str(shop.dataset("shop.orders").path))
    assert polars.height == 1002 and polars["id"].n_unique() == 1002
    assert len(store_rows(shop, 1)) == len(delta_rows(shop, 0)) == 1000  # time travel
    protocol = DeltaTable(str(shop.dataset("shop.orders").path)).protocol()
    assert protocol.min_reader_version == 3 and "deletionVectors" in (protocol.reader_features or [])
    assert verified(shop).ok


def test_change_set_reads_only_what_changed(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(200)))
    shop.publish("shop.orders", orders([3, 4, 500], amount="2.00"), mode="merge")
    shop.publish("shop.orders", orders([4, 7], amount="3.00"), mode="merge")
    dataset = shop.dataset("shop.orders")
    schema = pa.schema([("id", pa.int64()), ("amount", pa.decimal128(12, 2)),
                        ("_ferry_op", pa.string())])
    changes = change_set(dataset, dataset.version(1), dataset.version(3), ["id", "amount"],
                         ["id"], None, schema).read_all().to_pylist()
    assert sorted((c["id"], c["amount"], c["_ferry_op"]) for c in changes) == [
        (3, Decimal("2.00"), "upsert"), (4, Decimal("3.00"), "upsert"),
        (7, Decimal("3.00"), "upsert"), (500, Decimal("2.00"), "upsert")]
    back = change_set(dataset, dataset.version(3), dataset.version(1), ["id", "amount"],
                      ["id"], None, schema).read_all().to_pylist()
    assert sorted((c["id"], c["_ferry_op"]) for c in back) == [
        (3, "upsert"), (4, "upsert"), (7, "upsert"), (500, "delete")]


def test_a_file_mostly_replaced_is_rewritten(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(10)))
    shop.publish("shop.orders", orders(range(6), amount="5.00"), mode="merge")
    head = shop.dataset("shop.orders").head()
    assert head is not None
    assert not any(f.deletion_vector for f in head.manifest.files)
    assert len(head.manifest.removed) == 1
    assert store_rows(shop) == {i: Decimal("5.00" if i < 6 else "1.50") for i in range(10)}
    assert verified(shop).ok


def test_merge_on_read_off_keeps_reader_version_1(shop: StoreFixture) -> None:
    spec = shop.spec("shop.orders")
    object.__setattr__(spec, "merge_on_read", False)
    shop.publish("shop.orders", orders(range(100)))
    shop.publish("shop.orders", orders([1], amount="5.00"), mode="merge")
    table = DeltaTable(str(shop.dataset("shop.orders").path))
    assert table.protocol().min_reader_version == 1
    assert table.to_pyarrow_table().num_rows == 100  # plain readers still work


def test_verify_catches_a_changed_deletion_vector(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(100)))
    shop.publish("shop.orders", orders([1, 2], amount="5.00"), mode="merge")
    head = shop.dataset("shop.orders").head()
    assert head is not None
    entry = next(f for f in head.manifest.files if f.deletion_vector)
    assert entry.deletion_vector is not None
    vector = DeletionVector.from_json(entry.deletion_vector)
    path = shop.dataset("shop.orders").path / vector.file
    # Forge a vector that hides other rows, with a valid CRC: only the signed hash tells.
    from pyroaring import BitMap

    forged = deletion_vectors.write_file(path.parent, {"x": BitMap([7, 8])}, "blake3")["x"]
    path.write_bytes((path.parent / forged.file).read_bytes())
    report = verified(shop)
    assert not report.ok
    assert any("deletion vector" in p.problem and "hash" in p.problem
               for p in report.problems), report.problems
    path.write_bytes(b"\x01garbage")
    assert any("wrong size" in p.problem or "CRC" in p.problem for p in verified(shop).problems)


def test_log_names_the_vector_as_the_delta_protocol_says(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(100)))
    shop.publish("shop.orders", orders([1], amount="5.00"), mode="merge")
    dataset = shop.dataset("shop.orders")
    _, actions = dataset.delta_entry(1)
    adds = [a["add"] for a in actions if "add" in a]
    vector = next(a["deletionVector"] for a in adds if "deletionVector" in a)
    assert vector["storageType"] == "u" and len(vector["pathOrInlineDv"]) == 20
    uuid_bytes = deletion_vectors.z85_decode(vector["pathOrInlineDv"])
    import uuid

    assert (dataset.path / f"deletion_vector_{uuid.UUID(bytes=uuid_bytes)}.bin").is_file()
    assert all(json.loads(a["stats"])["numRecords"] in (100, 1) for a in adds)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 9)), min_size=1,
                         max_size=25), min_size=1, max_size=6))
def test_any_sequence_of_merges_reads_back_like_a_dict(
        shop: StoreFixture, batches: list[list[tuple[int, int]]]) -> None:
    import shutil

    shutil.rmtree(shop.dataset("shop.orders").path, ignore_errors=True)
    expected: dict[int, Decimal] = {i: Decimal("1.50") for i in range(0, 60, 2)}
    shop.publish("shop.orders", orders(sorted(expected)))
    for batch in batches:
        last: dict[int, int] = {}
        for key, amount in batch:
            last[key] = amount
        table = pa.concat_tables([orders([k], amount=f"{a}.00") for k, a in last.items()])
        shop.publish("shop.orders", table, mode="merge")
        expected.update({k: Decimal(f"{a}.00") for k, a in last.items()})
        got: dict[Any, Any] = store_rows(shop)
        assert got == expected
    assert delta_rows(shop) == expected
    assert verified(shop).ok


def test_gc_keeps_the_vectors_kept_versions_need(shop: StoreFixture) -> None:
    from dataferry.store.gc import collect

    shop.publish("shop.orders", orders(range(100)))
    shop.publish("shop.orders", orders([1], amount="5.00"), mode="merge")
    shop.publish("shop.orders", orders([2], amount="6.00"), mode="merge")
    dataset = shop.dataset("shop.orders")
    vectors = sorted(p.name for p in dataset.path.glob("deletion_vector_*.bin"))
    assert len(vectors) == 2
    collect(dataset, shop.store.keys, keep=1)
    left = sorted(p.name for p in dataset.path.glob("deletion_vector_*.bin"))
    assert len(left) == 1 and left[0] in vectors  # version 2's vector is no longer needed
    assert store_rows(shop) == {**{i: Decimal("1.50") for i in range(100)},
                                1: Decimal("5.00"), 2: Decimal("6.00")}
    assert verified(shop).ok


def _computed(shop: StoreFixture, ref: str, data: pa.Table, inputs: int,
              mode: str = "merge") -> Any:
    return publish_computed(shop.dataset(ref), shop.spec(ref), data, shop.store.keys, inputs,
                            mode=mode)


def _parted(ids: range) -> pa.Table:
    from datetime import date

    return pa.table({"id": pa.array(list(ids), pa.int64()),
                     "day": pa.array([date(2026, 1, 1 + i % 28) for i in ids])})


def test_the_same_rows_from_new_inputs_are_a_delta_commit_of_their_own(
        shop: StoreFixture) -> None:
    """A transformer's version with new inputs and the same rows (the chaos test's
    ``shop.totals``): merged, it changes no file, and still names a Delta commit of its
    own, so verify holds the commit's adds to the manifest's and delta-rs reads it."""
    for ref, data in (("shop.orders", orders(range(50))), ("shop.parted", _parted(range(50)))):
        _computed(shop, ref, data, 1, mode="replace")
        second = _computed(shop, ref, data, 2)
        assert (second.version, second.unchanged) == (2, False)
        dataset = shop.dataset(ref)
        first_commit, second_commit = (dataset.version(n).manifest.delta_commit["version"]
                                       for n in (1, 2))
        assert second_commit == first_commit + 1, ref
        report = VerifyReport()
        verify_dataset(dataset, report, deep=True)
        assert report.ok, (ref, [p.as_text() for p in report.problems])
        assert DeltaTable(str(dataset.path), version=second_commit).to_pyarrow_table() \
            .num_rows == 50
        assert _computed(shop, ref, data, 2).unchanged  # the same inputs: nothing new
    # a file slipped into that empty commit is caught (by its hash, and as an add)
    dataset = shop.dataset("shop.orders")
    log = dataset.path / "_delta_log" / \
        f"{dataset.version(2).manifest.delta_commit['version']:020d}.json"
    first_add = next(line for line in (dataset.path / "_delta_log" / f"{0:020d}.json")
                     .read_bytes().splitlines(keepends=True) if line.startswith(b'{"add"'))
    log.write_bytes(log.read_bytes() + first_add)
    report = VerifyReport()
    verify_dataset(dataset, report)
    problems = [p.as_text() for p in report.problems]
    assert any("adds other files than the manifest" in p for p in problems), problems


def test_a_version_written_before_that_fix_still_verifies(
        shop: StoreFixture, monkeypatch: Any) -> None:
    """Stores made until December 2026 hold such versions naming their predecessor's
    Delta commit; they are what was signed, and verify accepts them (by hash)."""
    from dataferry.store import publish as publishing

    monkeypatch.setattr(publishing, "_commit_nothing",
                        lambda dataset, written, *_: written)  # the old behaviour
    _computed(shop, "shop.orders", orders(range(50)), 1, mode="replace")
    assert _computed(shop, "shop.orders", orders(range(50)), 2).version == 2
    dataset = shop.dataset("shop.orders")
    assert dataset.version(2).manifest.delta_commit == dataset.version(1).manifest.delta_commit
    assert verified(shop).ok, [p.as_text() for p in verified(shop).problems]
    monkeypatch.undo()
    third = _computed(shop, "shop.orders", orders(range(60)), 3)
    assert (third.version, third.rows) == (3, 60)
    assert verified(shop).ok and store_rows(shop, 2) == store_rows(shop, 1)
    # gc keeping versions 2 and 3: the chain restarts at the old-form version, whose
    # predecessor's commit verify no longer knows; it still verifies (and only so)
    from dataferry.store.gc import collect

    collect(dataset, shop.store.keys, keep=2)
    assert dataset.version_numbers() == [2, 3]
    assert verified(shop).ok, [p.as_text() for p in verified(shop).problems]
    log = dataset.path / "_delta_log" / f"{dataset.version(2).manifest.delta_commit['version']:020d}.json"
    assert b'"add"' in log.read_bytes()
    # the older form is taken on its hash: a commit edited under it is still caught
    log.write_bytes(log.read_bytes().replace(b'"add"', b'"add" ', 1))
    problems = [p.as_text() for p in verified(shop).problems]
    assert any("@2" in p and "changed after the version was signed" in p for p in problems), \
        problems


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(
    st.dictionaries(st.integers(0, 30), st.integers(0, 3), min_size=1, max_size=20),
    st.integers(1, 3), st.sampled_from(["f", "g"])), min_size=1, max_size=7),
    st.sampled_from(["shop.orders", "shop.parted"]))
def test_any_sequence_of_a_transformers_versions_verifies_and_reads_back(
        shop: StoreFixture, steps: list[tuple[dict[int, int], int, str]], ref: str) -> None:
    """A keyed transformer publishes each output as its keyed difference from the head
    (``by_key``), and a version whenever its rows, its input versions or its definition
    differ. Over any sequence of outputs, inputs and definitions: a version exactly then,
    each verifying deeply, read back as its output by dataferry and by delta-rs."""
    import shutil
    from datetime import date

    from dataferry.store.publish import publish

    dataset = shop.dataset(ref)
    shutil.rmtree(dataset.path, ignore_errors=True)
    outputs: list[dict[int, int]] = []
    recorded: tuple[int, str] | None = None
    for rows, inputs, fingerprint in steps:
        if ref == "shop.orders":
            table = pa.concat_tables([orders([k], amount=f"{a}.00")
                                      for k, a in sorted(rows.items())])
        else:  # the amount as the day of the month: a partition per value
            table = pa.table({"id": pa.array(sorted(rows), pa.int64()),
                              "day": pa.array([date(2026, 1, 1 + rows[k]) for k in sorted(rows)])})
        published = publish(dataset, shop.spec(ref), table, keys=shop.store.keys,
                            lineage=[{"ref": "shop.events", "version": inputs}],
                            definition={"fingerprint": fingerprint, "body": "sql", "parts": {}},
                            by_key=True, max_delete_ratio=None)
        expected_new = not outputs or rows != outputs[-1] or (inputs, fingerprint) != recorded
        assert published.unchanged != expected_new, (rows, inputs, fingerprint)
        if expected_new:
            outputs.append(rows)
            recorded = (inputs, fingerprint)
        assert published.version == len(outputs)
        report = VerifyReport()
        verify_dataset(dataset, report, deep=True)
        assert report.ok, [p.as_text() for p in report.problems]
    for number, rows in enumerate(outputs, start=1):
        table = dataset.reader(dataset.resolve(number)).read_all()
        column = "amount" if ref == "shop.orders" else "day"
        got = dict(zip(table.column("id").to_pylist(), table.column(column).to_pylist(),
                       strict=True))
        want: dict[int, Any] = {k: Decimal(f"{a}.00") if ref == "shop.orders"
                                else date(2026, 1, 1 + a) for k, a in rows.items()}
        assert got == want, number
        commit = dataset.version(number).manifest.delta_commit["version"]
        read = DeltaTable(str(dataset.path), version=commit).to_pyarrow_table() \
            if ref == "shop.parted" else None
        if read is not None:  # deltalake's pyarrow reader refuses deletion vectors
            assert dict(zip(read.column("id").to_pylist(), read.column("day").to_pylist(),
                            strict=True)) == want, number
    head = outputs[-1]
    if ref == "shop.orders":
        assert delta_rows(shop) == {k: Decimal(f"{a}.00") for k, a in head.items()}
