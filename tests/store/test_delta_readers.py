"""What Delta readers outside dataferry get from the store: file statistics they skip
files by, timestamps without a zone shown as written, and commits that say what they did."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pds
from deltalake import DeltaTable, QueryBuilder

from dataferry import __version__
from dataferry.model.spec import Column, SourceDataset
from dataferry.store.dataset import DatasetStore
from dataferry.store.keys import KeyStore
from dataferry.store.publish import publish
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders

LEGACY = Path(__file__).parent / "data" / "legacy_timestamps"
"""A store written before ``timestamp_ntz`` (by commit 4c27345's ``publish`` of
``LEGACY_SPEC`` with rows 1-3): lab.events, one version, ``at`` a ``timestamp`` kept as
a UTC instant (reader 1 / writer 2), with the test-only key that signed it."""


def commit(dataset: DatasetStore, version: int) -> list[dict[str, Any]]:
    raw = (dataset.delta_log / f"{version:020d}.json").read_text()
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def added_stats(dataset: DatasetStore, version: int) -> list[dict[str, Any]]:
    return [json.loads(a["add"]["stats"]) for a in commit(dataset, version) if "add" in a]


def scanned_files(table: DeltaTable, sql: str) -> int:
    """How many data files delta-rs' query engine opens for ``sql`` (EXPLAIN ANALYZE)."""
    plan = pa.table(QueryBuilder().register("t", table).execute(f"explain analyze {sql}")
                    .read_all()).column("plan").to_pylist()
    groups = re.search(r"file_groups=\{.*?\]\]\}", "".join(plan))
    return 0 if groups is None else groups.group(0).count(".parquet")


def verified(dataset: DatasetStore) -> None:
    report = VerifyReport()
    verify_dataset(dataset, report, deep=True)
    assert report.ok, report.problems


def test_filtered_reads_skip_files_by_their_statistics(shop: StoreFixture) -> None:
    for start, mode in ((0, "replace"), (100, "append"), (200, "append")):
        shop.publish("shop.orders", orders(range(start, start + 100)), mode=mode)
    dataset = shop.dataset("shop.orders")
    table = DeltaTable(str(dataset.path))
    assert scanned_files(table, "select * from t where id = 250") == 1
    assert scanned_files(table, "select * from t where id < 1000") == 3
    fragments = table.to_pyarrow_dataset().get_fragments(filter=pds.field("id") >= 150)
    assert len(list(fragments)) == 2
    stats = added_stats(dataset, 1)
    assert stats == [{"numRecords": 100,
                      "minValues": {"id": 100, "customer": "c100", "amount": 1.5,
                                    "at": "2026-01-01T00:00:00.000Z"},
                      "maxValues": {"id": 199, "customer": "c199", "amount": 1.5,
                                    "at": "2026-01-01T00:00:00.000Z"},
                      "nullCount": {"id": 0, "customer": 0, "amount": 0, "at": 0}}]
    verified(dataset)


def test_a_merge_commit_says_what_it_did_and_keeps_files_skippable(shop: StoreFixture) -> None:
    shop.publish("shop.orders", orders(range(0, 100)))
    shop.publish("shop.orders", orders(range(100, 200)), mode="append")
    shop.publish("shop.orders", orders([5, 7, 500], amount="2.00"), mode="merge")
    dataset = shop.dataset("shop.orders")
    actions = commit(dataset, 2)
    info = actions[0]["commitInfo"]
    assert info["operation"] == "MERGE" and info["readVersion"] == 1
    assert info["engineInfo"] == info["clientVersion"] == f"dataferry/{__version__}"
    assert info["operationParameters"]["predicate"] == "t.id = s.id"
    assert json.loads(info["operationParameters"]["matchedPredicates"]) == [
        {"actionType": "update"}]
    metrics = info["operationMetrics"]
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"],
            metrics["numTargetRowsDeleted"], metrics["numOutputRows"]) == ("1", "2", "0", "3")
    assert metrics["numTargetFilesAdded"] == "1" and int(metrics["executionTimeMs"]) >= 0
    adds = [a["add"] for a in actions if "add" in a]
    kept = [json.loads(a["stats"]) for a in adds if "deletionVector" in a]
    new = [json.loads(a["stats"]) for a in adds if "deletionVector" not in a]
    # a file with a deletion vector still counts its deleted rows: its bounds are wide
    assert [s["tightBounds"] for s in kept] == [False]
    assert kept[0]["numRecords"] == 100 and kept[0]["minValues"]["id"] == 0
    assert new[0]["minValues"]["id"] == 5 and new[0]["maxValues"]["id"] == 500
    table = DeltaTable(str(dataset.path))
    assert scanned_files(table, "select * from t where id = 350") == 1  # the new file only
    assert scanned_files(table, "select * from t where amount > 1.8") == 1
    rows = pa.table(QueryBuilder().register("t", table).execute(
        "select id, amount from t where id < 10 order by id").read_all()).to_pylist()
    assert [(r["id"], str(r["amount"])) for r in rows] == [
        (i, "2.00" if i in (5, 7) else "1.50") for i in range(10)]
    assert commit(dataset, 1)[0]["commitInfo"]["isBlindAppend"] is True
    verified(dataset)


def events_spec(**extra: Column) -> SourceDataset:
    return SourceDataset(table="events", primary_key=["id"], columns={
        "id": Column(type="int64", nullable=False), **extra})


def events(ids: list[int], at: list[dt.datetime | None] | None = None) -> pa.Table:
    columns: dict[str, pa.Array] = {"id": pa.array(ids, pa.int64())}
    if at is not None:
        columns["at"] = pa.array(at, pa.timestamp("us"))
    return pa.table(columns)


TEN = dt.datetime(2024, 5, 1, 10, 0)


def read_elsewhere(path: Path) -> dict[str, Any]:
    """``at`` of row 1 as Polars, delta-rs and DuckDB (in a session in New York, where a
    UTC instant would show as 06:00) read it."""
    polars = pl.read_delta(str(path)).sort("id")
    delta = pa.table(QueryBuilder().register("t", DeltaTable(str(path))).execute(
        "select at from t where id = 1").read_all())
    files = [str(p) for p in path.glob("part-*.parquet")]
    db = duckdb.connect()
    db.execute("set TimeZone = 'America/New_York'")
    duck = db.execute('select typeof("at"), "at"::varchar from read_parquet(?) where id = 1',
                      [files]).fetchall()
    return {"polars": (polars.schema["at"], polars["at"][0]),
            "delta": delta.column("at").to_pylist()[0], "duckdb": duck}


def test_a_timestamp_reads_back_as_written_wall_time(tmp_path: Path) -> None:
    dataset = DatasetStore(tmp_path / "store", "lab.events")
    keys = KeyStore(tmp_path / "home")
    publish(dataset, events_spec(at=Column(type="timestamp")), events([1, 2], [TEN, None]),
            keys=keys)
    schema = json.loads(DeltaTable(str(dataset.path)).schema().to_json())
    assert [f["type"] for f in schema["fields"]] == ["long", "timestamp_ntz"]
    protocol = DeltaTable(str(dataset.path)).protocol()
    assert "timestampNtz" in (protocol.reader_features or [])
    assert "timestampNtz" in (protocol.writer_features or [])
    seen = read_elsewhere(dataset.path)
    assert seen["polars"] == (pl.Datetime("us"), TEN)  # no time zone, not shifted
    assert seen["delta"] == TEN
    assert seen["duckdb"] == [("TIMESTAMP", "2024-05-01 10:00:00")]
    stats = added_stats(dataset, 0)[0]
    assert stats["minValues"]["at"] == stats["maxValues"]["at"] == "2024-05-01T10:00:00.000"
    assert stats["nullCount"]["at"] == 1
    head = dataset.resolve(None)
    assert dataset.reader(head).read_all().column("at").to_pylist() == [TEN, None]
    verified(dataset)


def test_a_timestamp_column_added_to_an_older_table_turns_the_feature_on(
        tmp_path: Path) -> None:
    """deltalake's transaction API would commit the new schema without the feature,
    leaving a table no reader opens."""
    dataset = DatasetStore(tmp_path / "store", "lab.events")
    keys = KeyStore(tmp_path / "home")
    publish(dataset, events_spec(), events([1]), keys=keys)
    assert DeltaTable(str(dataset.path)).protocol().min_reader_version == 1
    publish(dataset, events_spec(at=Column(type="timestamp")), events([2], [TEN]), keys=keys,
            mode="append")
    protocol = DeltaTable(str(dataset.path)).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (3, 7)
    assert "timestampNtz" in (protocol.reader_features or [])
    assert set(protocol.writer_features or []) >= {"timestampNtz", "appendOnly", "invariants"}
    polars = pl.read_delta(str(dataset.path)).sort("id")
    assert polars["at"].to_list() == [None, TEN]
    verified(dataset)


def legacy_store(tmp_path: Path) -> tuple[DatasetStore, KeyStore]:
    shutil.copytree(LEGACY, tmp_path / "legacy")
    (tmp_path / "legacy" / "home" / "keys" / "lab.ed25519").chmod(0o600)
    return (DatasetStore(tmp_path / "legacy" / "store", "lab.events"),
            KeyStore(tmp_path / "legacy" / "home"))


LEGACY_SPEC = SourceDataset(table="events", primary_key=["id"], columns={
    "id": Column(type="int64", nullable=False), "at": Column(type="timestamp"),
    "at_tz": Column(type="timestamp_tz"), "note": Column(type="string")})


def legacy_rows(ids: list[int], hour: int) -> pa.Table:
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "at": pa.array([dt.datetime(2024, 6, 1, hour)] * len(ids), pa.timestamp("us")),
        "at_tz": pa.array([dt.datetime(2024, 6, 1, tzinfo=dt.UTC)] * len(ids),
                          pa.timestamp("us", "UTC")),
        "note": [f"n{i}" for i in ids]})


def delta_types(dataset: DatasetStore) -> dict[str, str]:
    schema = json.loads(DeltaTable(str(dataset.path)).schema().to_json())
    return {f["name"]: f["type"] for f in schema["fields"]}


def test_an_older_dataset_keeps_its_timestamps_until_a_replace_rewrites_them(
        tmp_path: Path) -> None:
    dataset, keys = legacy_store(tmp_path)
    verified(dataset)
    assert delta_types(dataset)["at"] == "timestamp"
    # a merge adds a file next to the old ones: the table keeps the form they have
    publish(dataset, LEGACY_SPEC, legacy_rows([2, 4], 12), keys=keys, mode="merge")
    assert delta_types(dataset)["at"] == "timestamp"
    assert DeltaTable(str(dataset.path)).protocol().min_reader_version in (1, 3)
    head = dataset.resolve(None)
    read = sorted(dataset.reader(head).read_all().to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["at"].replace(tzinfo=None) if r["at"] else None) for r in read] == [
        (1, TEN), (2, dt.datetime(2024, 6, 1, 12)), (3, None), (4, dt.datetime(2024, 6, 1, 12))]
    verified(dataset)
    # a replace writes every file anew: now the column is timestamp_ntz
    publish(dataset, LEGACY_SPEC, legacy_rows([1, 2], 9), keys=keys)
    assert delta_types(dataset) == {"id": "long", "at": "timestamp_ntz",
                                    "at_tz": "timestamp", "note": "string"}
    assert "timestampNtz" in (DeltaTable(str(dataset.path)).protocol().reader_features or [])
    polars = pl.read_delta(str(dataset.path)).sort("id")
    assert polars.schema["at"] == pl.Datetime("us")
    assert polars["at"].to_list() == [dt.datetime(2024, 6, 1, 9)] * 2
    # the older versions still read (time travel) with their wall-clock times
    first = dataset.reader(dataset.version(1)).read_all().to_pylist()
    assert sorted((r["id"], r["at"].replace(tzinfo=None) if r["at"] else None)
                  for r in first) == [(1, TEN), (2, dt.datetime(2024, 5, 2, 11, 30)), (3, None)]
    verified(dataset)


def test_a_first_version_with_a_timestamp_in_a_map_opens_in_delta_readers(
        tmp_path: Path) -> None:
    """deltalake's table creation does not turn timestampNtz on for a map's values."""
    dataset = DatasetStore(tmp_path / "store", "lab.events")
    spec = events_spec(seen=Column(type="map<int16,timestamp>"))
    table = events([1]).append_column("seen", pa.array(
        [[(3, TEN)]], pa.map_(pa.int16(), pa.timestamp("us"))))
    publish(dataset, spec, table, keys=KeyStore(tmp_path / "home"))
    info = commit(dataset, 0)[0]["commitInfo"]
    assert (info["operation"], info["engineInfo"]) == ("WRITE", f"dataferry/{__version__}")
    assert "timestampNtz" in (DeltaTable(str(dataset.path)).protocol().reader_features or [])
    assert pl.read_delta(str(dataset.path))["seen"].to_list() == [{3: TEN}]
    verified(dataset)
