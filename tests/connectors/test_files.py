"""The files source: CSV, Parquet and JSON Lines read exactly, globs, incremental capture."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.files import FilesSource, formats
from dataferry.errors import SourceError
from dataferry.model.spec import FilesSource as FilesSpec
from dataferry.model.spec import SourceDataset
from dataferry.store.conform import Conformer


def source(root: Path, path: str = "data/*", fmt: str | None = None) -> FilesSource:
    spec = FilesSpec.model_validate({"kind": "files", "path": path, "format": fmt})
    return FilesSource("sensors.files", spec, root)


def dataset(columns: dict[str, Any], **keys: Any) -> SourceDataset:
    return SourceDataset.model_validate({"columns": columns, **keys})


def read(
    src: FilesSource, ds: SourceDataset, state: dict[str, Any] | None = None,
    batch_rows: int = 65_536,
) -> tuple[pa.Table, dict[str, Any] | None]:
    result = src.read(ReadRequest("sensors.readings", ds, list(ds.columns), state=state,
                                  batch_rows=batch_rows))
    table = result.reader.read_all()
    return table, result.state()


def conformed(table: pa.Table, ds: SourceDataset) -> list[dict[str, Any]]:
    conformer = Conformer("sensors.readings", ds.columns)
    rows: list[dict[str, Any]] = pa.Table.from_batches(
        [conformer.conform(b) for b in table.to_batches()], conformer.schema
    ).to_pylist()
    return rows


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


# --- formats ---------------------------------------------------------------------------


def test_csv_values_keep_their_text_and_conform_to_the_declared_types(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": 'id,code,amount,day,at,note,extra\n'
                     '1,0012,1e3,2024-05-01,2024-05-01T12:00:00+02:00,,x\n'
                     '2,"",2.50,,2024-05-01T10:00:00Z,"",y\n'
                     '3,007,"1,5",2024-02-29,,"multi\nline",z\n'})
    ds = dataset({"id": "int64", "code": "string", "amount": "string", "day": "date",
                  "at": "timestamp_tz", "note": "string"})
    table, _ = read(source(tmp_path), ds)
    assert table.schema.names == ["id", "code", "amount", "day", "at", "note"]  # no extra
    assert all(t == pa.string() for t in table.schema.types)
    assert table.to_pylist()[0] == {"id": "1", "code": "0012", "amount": "1e3",
                                    "day": "2024-05-01", "at": "2024-05-01T12:00:00+02:00",
                                    "note": None}  # unquoted empty: missing
    assert table.column("note").to_pylist()[1:] == ["", "multi\nline"]  # quoted "": empty
    assert table.column("code").to_pylist() == ["0012", "", "007"]
    rows = conformed(table, ds)
    assert rows[0]["at"] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert rows[1]["day"] is None and rows[2]["day"] == date(2024, 2, 29)


def test_csv_numbers_reach_decimals_exactly(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": "id,amount\n1,1e3\n2,0.1\n3,12345678901234567890.123\n"})
    ds = dataset({"id": "int64", "amount": "decimal(30,3)"})
    rows = conformed(read(source(tmp_path), ds)[0], ds)
    assert [r["amount"] for r in rows] == [Decimal("1000.000"), Decimal("0.100"),
                                           Decimal("12345678901234567890.123")]


def test_parquet_keeps_its_types_and_reads_only_declared_columns(tmp_path: Path) -> None:
    table = pa.table({
        "id": pa.array([1, 2], pa.int32()),
        "amount": pa.array([Decimal("1.10"), None], pa.decimal128(12, 2)),
        "at": pa.array([datetime(2024, 1, 1, tzinfo=UTC), None], pa.timestamp("ms", "UTC")),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "point": pa.array([{"x": 1.5, "y": 2}, None],
                          pa.struct([("x", pa.float64()), ("y", pa.int64())])),
        "unused": ["big", "blob"],
    })
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    ds = dataset({"tags": "list<string>", "id": "int64", "amount": "decimal(12,2)",
                  "at": "timestamp_tz", "point": "struct<x:float64, y:int64>"})
    got, _ = read(source(tmp_path), ds)
    assert got.schema.names == ["tags", "id", "amount", "at", "point"]
    assert got.schema.field("id").type == pa.int32()
    assert got.schema.field("at").type == pa.timestamp("ms", "UTC")
    assert got.column("amount").to_pylist() == [Decimal("1.10"), None]
    rows = conformed(got, ds)
    assert rows[0] == {"tags": ["a", "b"], "id": 1, "amount": Decimal("1.10"),
                       "at": datetime(2024, 1, 1, tzinfo=UTC), "point": {"x": 1.5, "y": 2}}


def test_jsonl_numbers_stay_exact_and_nested_values_nested(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "amount": 0.1, "big": 123456789012345678901234567890, "ratio": 1e-3,
         "tags": [1, 2], "point": {"x": 0.5, "extra": True}, "zip": "0012"},
        {"id": 2, "amount": 2, "big": None, "ratio": 2.5, "tags": [], "zip": "10115",
         "undeclared": {"deep": [1]}},
    ]
    write(tmp_path, {"data/a.ndjson": "\n".join(json.dumps(x) for x in lines) + "\n\n"})
    ds = dataset({"id": "int64", "amount": "decimal(10,2)", "big": "decimal(40,0)",
                  "ratio": "float64", "tags": "list<int32>", "point": "struct<x:decimal(4,2)>",
                  "zip": "string"})
    table, _ = read(source(tmp_path), ds)
    assert table.schema.field("tags").type == pa.list_(pa.string())  # text leaves
    rows = conformed(table, ds)
    assert rows == [
        {"id": 1, "amount": Decimal("0.10"), "big": Decimal(123456789012345678901234567890),
         "ratio": 0.001, "tags": [1, 2], "point": {"x": Decimal("0.50")}, "zip": "0012"},
        {"id": 2, "amount": Decimal("2.00"), "big": None, "ratio": 2.5, "tags": [],
         "point": None, "zip": "10115"},
    ]


def test_jsonl_json_and_map_columns_keep_the_json_exactly(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.jsonl": '{"id": 1, "doc": {"b": 1.10, "a": [1e400, "x"]}, '
                     '"attrs": {"k": 1, "z": 0.30}}\n{"id": 2, "doc": "text", "attrs": {}}\n'
                     '{"id": 3, "doc": null}\n'})
    ds = dataset({"id": "int64", "doc": "json", "attrs": "map<string,decimal(5,2)>"})
    rows = conformed(read(source(tmp_path), ds)[0], ds)
    assert rows[0]["doc"] == '{"b":1.10,"a":[1e400,"x"]}'  # numbers as written
    assert rows[0]["attrs"] == [("k", Decimal("1.00")), ("z", Decimal("0.30"))]
    assert rows[1]["doc"] == '"text"' and rows[1]["attrs"] == []
    assert rows[2]["doc"] is None


def test_jsonl_value_arrow_refuses_continues_exactly_after_the_rows_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "BLOCK_BYTES", 4096)  # many blocks
    lines = [{"id": i, "name": f"n{i}", "score": i} for i in range(3000)]
    lines[2500]["score"] = 7.0  # Arrow's int64 parser refuses it; conform accepts it
    lines[2600]["name"] = 42  # a number where text is declared
    write(tmp_path, {"data/a.jsonl": "\n".join(json.dumps(x) for x in lines)})
    ds = dataset({"id": "int64", "name": "string", "score": "int64"})
    table, _ = read(source(tmp_path), ds, batch_rows=700)
    assert table.num_rows == 3000
    rows = conformed(table, ds)
    assert [r["id"] for r in rows] == list(range(3000))
    assert rows[2500]["score"] == 7 and rows[2600]["name"] == "42"


def test_jsonl_errors_name_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"data/bad.jsonl": '{"id": 1, "tags": ["a"]}\n{"id": 2, "tags": "a"}\n',
                     "other/broken.jsonl": '{"id": 1}\n{"id": \n'})
    ds = dataset({"id": "int64", "tags": "list<string>"})
    with pytest.raises(SourceError, match=r"bad.jsonl line 2: column 'tags': expected an "
                       r"array for the declared list<string>, got a string"):
        read(source(tmp_path), ds)
    with pytest.raises(SourceError, match=r"broken.jsonl line 2: not valid JSON"):
        read(source(tmp_path, "other/*.jsonl"), ds)


def test_files_of_different_formats_orders_and_types_make_one_stream(tmp_path: Path) -> None:
    write(tmp_path, {"data/1.csv": "amount,id\n1.5,1\n",
                     "data/2.jsonl": '{"id": 2, "amount": 2.25}\n'})
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()),
                             "amount": pa.array([3], pa.int32())}), tmp_path / "data/3.parquet")
    pq.write_table(pa.table({"id": pa.array([4], pa.int16())}), tmp_path / "data/4.parquet")
    ds = dataset({"id": "int64", "amount": "decimal(6,2)"})
    table, _ = read(source(tmp_path), ds)
    assert table.schema.types == [pa.string(), pa.string()]  # text holds every value exactly
    assert conformed(table, ds) == [
        {"id": 1, "amount": Decimal("1.50")}, {"id": 2, "amount": Decimal("2.25")},
        {"id": 3, "amount": Decimal("3.00")}, {"id": 4, "amount": None},  # 4 lacks it
    ]
    only_parquet, _ = read(source(tmp_path, "data/*.parquet"), ds)
    assert only_parquet.schema.field("id").type == pa.int64()  # int16 + int64
    assert only_parquet.schema.field("amount").type == pa.int32()


def test_missing_column_declared_not_nullable_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": "id,v\n1,2\n", "data/b.csv": "v\n3\n"})
    ds = dataset({"id": {"type": "int64", "nullable": False}, "v": "int64"})
    with pytest.raises(SourceError, match=r"b\.csv has no column 'id', which is declared "
                       r"not nullable \(found: v\)"):
        read(source(tmp_path), ds)


def test_glob_recursion_overrides_compression_and_state_keys(tmp_path: Path) -> None:
    write(tmp_path, {"in/2024/01/a.csv": "id\n1\n", "in/2024/02/b.csv": "id\n2\n",
                     "in/.hidden.csv": "id\n9\n", "in/notes.md": "ignored",
                     "in/2024/c.dat": "id\n3\n",
                     "in/2024/d.csv.gz": gzip.compress(b"id\n4\n")})
    ds = dataset({"id": "int64"}, path="in/**/*.csv*")
    table, state = read(source(tmp_path, "elsewhere/*.csv"), ds)  # the dataset's path wins
    assert sorted(table.column("id").to_pylist()) == ["1", "2", "4"]
    assert state is not None
    assert sorted(state["files"]) == ["2024/01/a.csv", "2024/02/b.csv", "2024/d.csv.gz"]
    absolute = dataset({"id": "int64"}, path=str(tmp_path / "in/2024/*.dat"), format="csv")
    assert read(source(tmp_path), absolute)[0].column("id").to_pylist() == ["3"]
    with pytest.raises(SourceError, match=r"c\.dat: cannot tell the file format .*'.dat'"):
        read(source(tmp_path), dataset({"id": "int64"}, path="in/2024/*.dat"))


# --- capture ---------------------------------------------------------------------------


def test_incremental_reads_new_and_changed_files_only(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": "id,v\n1,a\n", "data/b.csv": "id,v\n2,b\n"})
    src, ds = source(tmp_path), dataset({"id": "int64", "v": "string"}, capture="incremental")
    table, state = read(src, ds)  # no state yet: everything
    assert sorted(table.column("id").to_pylist()) == ["1", "2"]
    assert state is not None and set(state["files"]) == {"a.csv", "b.csv"}
    assert state["files"]["a.csv"][0] == len("id,v\n1,a\n")

    table, same = read(src, ds, json.loads(json.dumps(state)))  # as stored with a version
    assert table.num_rows == 0 and same == state  # nothing new

    write(tmp_path, {"data/b.csv": "id,v\n2,B\n",  # same size, new content: the hash tells
                     "data/c.csv": "id,v\n3,c\n"})
    os.utime(tmp_path / "data/b.csv", ns=(0, 0))  # mtimes are not trusted either way
    table, after = read(src, ds, state)
    assert table.to_pylist() == [{"id": "2", "v": "B"}, {"id": "3", "v": "c"}]
    assert after is not None
    assert after["files"]["a.csv"] == state["files"]["a.csv"]  # kept
    assert after["files"]["b.csv"][0] == state["files"]["b.csv"][0]
    assert after["files"]["b.csv"][1] != state["files"]["b.csv"][1]

    (tmp_path / "data/a.csv").unlink()
    write(tmp_path, {"data/c.csv": "id,v\n3,c\n4,d\n"})  # grew
    table, last = read(src, ds, after)
    assert table.column("id").to_pylist() == ["3", "4"]
    assert last is not None and set(last["files"]) == {"b.csv", "c.csv"}  # a.csv is gone


def test_snapshot_reads_every_file_and_records_them(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": "id\n1\n", "data/b.csv": "id\n2\n"})
    ds = dataset({"id": "int64"})
    first = read(source(tmp_path), ds)
    table, state = read(source(tmp_path), ds, first[1])
    assert table.num_rows == 2 and state == first[1]


def test_a_glob_matching_nothing(tmp_path: Path) -> None:
    incremental = dataset({"id": "int64", "tags": "list<string>"}, capture="incremental")
    table, state = read(source(tmp_path, "drop/*.csv"), incremental)
    assert table.num_rows == 0 and table.schema.names == ["id", "tags"]
    assert state == {"files": {}}
    with pytest.raises(SourceError, match=r"no file matches 'drop/\*\.csv'"):
        read(source(tmp_path, "drop/*.csv"), dataset({"id": "int64"}))
    with pytest.raises(SourceError, match=r"no file matches"):
        source(tmp_path, "drop/*.csv").columns("d", dataset({"id": "int64"}))


def test_columns_report_the_union_of_the_files(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv": "id,name\n1,x\n",
                     "data/c.jsonl": '{"id": 3, "doc": {"a": 1}, "when": "2024-01-01"}\n'})
    pq.write_table(pa.table({"id": pa.array([2], pa.int64()),
                             "amount": pa.array([Decimal("1.5")], pa.decimal128(5, 1))}),
                   tmp_path / "data/b.parquet")
    columns = source(tmp_path).columns("d", dataset({"id": "int64", "doc": "json"}))
    found = {c.name: c for c in columns}
    assert list(found) == ["id", "name", "amount", "doc", "when"]
    assert found["amount"].arrow_type == pa.decimal128(5, 1)
    assert found["amount"].nullable  # only in one file of three
    assert found["name"].native_type == "text"
    assert found["doc"].native_type == "object" and found["doc"].arrow_type == pa.string()
    assert found["id"].native_type == "text | int64 | integer"


def test_large_csv_is_read_in_bounded_batches_and_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "BLOCK_BYTES", 256 << 10)
    path = tmp_path / "data" / "big.csv"
    path.parent.mkdir()
    rows = 1_000_000
    with path.open("w") as out:
        out.write("id,name,amount\n")
        for start in range(0, rows, 10_000):
            out.write("".join(f"{i},name-{i:08d}-padding-padding,{i}.25\n"
                              for i in range(start, start + 10_000)))
    size = path.stat().st_size
    ds = dataset({"id": "int64", "name": "string", "amount": "decimal(12,2)"})
    result = source(tmp_path).read(ReadRequest("s.d", ds, list(ds.columns), batch_rows=5000))
    base = pa.total_allocated_bytes()
    peak = count = biggest = 0
    for batch in result.reader:
        peak = max(peak, pa.total_allocated_bytes() - base)
        count += batch.num_rows
        biggest = max(biggest, batch.num_rows)
    assert count == rows and biggest == 5000
    assert size > 20 << 20
    assert peak < 64 * formats.BLOCK_BYTES < size / 2, (peak, size)  # ~40 blocks


# --- issue 12: broken files name their line; null_values is opt-in ---------------------


def test_broken_csv_names_the_file_and_line(tmp_path: Path) -> None:
    ds = dataset({"id": "int64", "note": "string"})
    cases = {
        "data/quote.csv": (b'id,note\n1,a\n2,"open\n3,c\n', "line 3: a quoted value starts here"),
        "data/latin.csv": ("id,note\n1,Jos\u00e9\n".encode("latin-1"), "line 2: byte 0xe9"),
        "data/count.csv": (b"id,note\n1,a\n2,b,c\n", "line 3: 3 fields, but the header has 2"),
    }
    for rel, (content, message) in cases.items():
        write(tmp_path / rel.split("/")[1], {rel: content})
        with pytest.raises(SourceError, match=message) as raised:
            read(source(tmp_path / rel.split("/")[1]), ds)
        assert rel.split("/")[1] in str(raised.value)


def test_csv_texts_stay_text_unless_named_in_null_values(tmp_path: Path) -> None:
    write(tmp_path, {"data/a.csv.gz": gzip.compress(b'id,note\n1,NULL\n2,NA\n3,-\n4,"-"\n5,\n')})
    plain = dataset({"id": "int64", "note": "string"})
    assert read(source(tmp_path), plain)[0].column("note").to_pylist() == [
        "NULL", "NA", "-", "-", None]
    marked = dataset({"id": "int64", "note": "string"}, null_values=["-", "NA"])
    assert read(source(tmp_path), marked)[0].column("note").to_pylist() == [
        "NULL", None, None, "-", None]  # a quoted "-" stays text
    spec = FilesSpec.model_validate({"kind": "files", "path": "data/*", "null_values": ["NULL"]})
    source_wide = FilesSource("sensors.files", spec, tmp_path)
    assert read(source_wide, plain)[0].column("note").to_pylist() == [
        None, "NA", "-", "-", None]
