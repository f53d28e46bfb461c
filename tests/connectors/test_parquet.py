"""The Parquet sink: table folders of Parquet files, switched atomically, in a temporary folder."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from dataferry.connectors.parquet import layout
from dataferry.errors import SinkError
from dataferry.model.types import from_arrow_field, parse_type
from tests.connectors.embedded import (
    ALL_TYPES,
    all_types_batch,
    all_types_delivery,
    big_delivery,
    check_kill,
    conform_all,
    delivery,
    first,
    make_sink,
    run_two_versions,
    schema,
    second,
)

SPEC = {"kind": "parquet", "path": "out/lake"}


def read_target(root: Path) -> Any:
    """Read a table the way a consumer would: DuckDB over the table folder."""

    def read(table: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'").fetchall()
            pattern = str(root / "out" / "lake" / table / "*.parquet")
            rows = con.sql(f"SELECT * FROM read_parquet('{pattern}')").to_arrow_table()
        finally:
            con.close()
        return [tuple(r.values()) for r in rows.to_pylist()]

    return read


@pytest.mark.parametrize("mode", ["replace", "merge", "append", "history"])
def test_two_versions_in_every_mode(tmp_path: Path, mode: str) -> None:
    run_two_versions(make_sink(SPEC, tmp_path), mode, read_target(tmp_path))
    lake = tmp_path / "out" / "lake"
    loads = json.loads((lake / "_ferry_loads.json").read_text())
    assert {k: loads["items"][k] for k in ("dataset", "version", "mode")} == {
        "dataset": "shop.items", "version": 2, "mode": mode}
    assert (lake / "items").is_symlink()
    # the previous snapshot stays for readers that listed it; older ones are gone
    assert len(list((lake / ".versions" / "items").iterdir())) == 2
    # pyarrow reads the table folder too
    assert ds.dataset(lake / "items").to_table().num_rows == len(read_target(tmp_path)("items"))


@pytest.mark.parametrize("mode", ["append", "merge", "replace"])
def test_killed_delivery_changes_nothing_and_reruns_once(tmp_path: Path, mode: str) -> None:
    check_kill(SPEC, tmp_path, mode, read_target(tmp_path))
    versions = tmp_path / "out" / "lake" / ".versions"
    assert not [p for p in versions.iterdir() if p.name.startswith(".tmp-")]


def test_every_type_round_trips_through_the_files(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    assert sink.deliver(all_types_delivery()) == 3
    table = ds.dataset(tmp_path / "out" / "lake" / "all_types").to_table()
    assert conform_all(table).equals(all_types_batch())
    declared = {n: t for n, t, _ in ALL_TYPES}
    for field in table.schema:  # every file field names its declared type
        assert from_arrow_field(field) == parse_type(declared[field.name])
    assert table.schema.field("u").type == pa.uuid()
    assert table.schema.field("j").type == pa.json_(pa.string())
    assert table.schema.field("wide").type == pa.string()
    assert table.schema.field("tz").type == pa.timestamp("us", tz="UTC")


def test_a_crash_after_the_commit_is_healed(tmp_path: Path, monkeypatch: Any) -> None:
    sink = make_sink(SPEC, tmp_path)
    sink.deliver(first("replace"))

    publish = layout.Folder.publish

    def crash(self: Any, table: str, snapshot: str) -> None:
        if "/v2-" in snapshot:  # dies after the manifest was replaced, before the link
            raise KeyboardInterrupt
        publish(self, table, snapshot)

    monkeypatch.setattr(layout.Folder, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        sink.deliver(second("replace"))
    monkeypatch.undo()
    lake = tmp_path / "out" / "lake"
    assert sorted(read_target(tmp_path)("items"))[1] == (2, "b", 2)  # still version 1
    assert sink.applied_version("shop.items", "items") == 2  # the manifest is the truth...
    assert sorted(read_target(tmp_path)("items"))[1] == (2, "B", 20)  # ...and the link healed
    loads = json.loads((lake / "_ferry_loads.json").read_text())
    assert os.readlink(lake / "items") == loads["items"]["snapshot"]


def test_readers_never_see_half_a_version(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    sink.deliver(first("append"))
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            # (a listed snapshot may be collected meanwhile: a reader would retry)
            with contextlib.suppress(FileNotFoundError, pa.ArrowInvalid, OSError):
                seen.append(ds.dataset(tmp_path / "out" / "lake" / "items").count_rows())

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        sink.deliver(big_delivery("append"))
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) <= {3, 3 + 60_000}


def test_evolution_and_refused_changes(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    sink.deliver(first("append"))
    columns = [("id", "int64", False), ("name", "string", True), ("qty", "decimal(12,2)", True),
               ("note", "string", True)]
    row_schema = schema(columns, [pa.field("_ferry_version", pa.int64())])
    batch = pa.RecordBatch.from_pylist(
        [{"id": 9, "name": "z", "qty": Decimal("1.50"), "note": "new", "_ferry_version": 2}],
        schema=row_schema)
    assert sink.deliver(delivery("append", 2, 1, [batch], row_schema, columns=columns)) == 1
    rows = sorted(read_target(tmp_path)("items"))
    assert rows[0] == (1, "a", Decimal("1.00"), None, 1)  # old rows: widened, new column empty
    assert rows[-1] == (9, "z", Decimal("1.50"), "new", 2)
    narrower = [("id", "int64", False), ("name", "string", True), ("qty", "int8", True)]
    with pytest.raises(SinkError, match="column 'qty'"):
        sink.deliver(delivery("append", 3, 2, [], schema(narrower), columns=narrower))
    assert sink.applied_version("shop.items", "items") == 2
    stale = second("merge")
    stale.version = 3
    with pytest.raises(SinkError, match="change set from version 1"):
        sink.deliver(stale)
    (tmp_path / "out" / "lake" / "mine").mkdir()
    mine = first("replace")
    mine.table = "mine"
    with pytest.raises(SinkError, match="not written by dataferry"):
        sink.deliver(mine)
