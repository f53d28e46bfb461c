"""`ferry publish` on real-world and broken files (issue 12, points 4 and 5).

A broken file fails with one line that names the file, the line or row and the problem,
never a traceback; values are read exactly as the files source reads them (one reader).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.files import FilesSource
from dataferry.model.spec import FilesSource as FilesSpec
from dataferry.model.spec import SourceDataset
from tests.conftest import write_files

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  drop:
    kind: files
    path: data/*.csv
    datasets:
      notes:
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          note: {type: string}
          amount: {type: decimal(12,2)}
      marked:
        primary_key: [id]
        null_values: ["-", "NULL"]
        columns:
          id: {type: int64, nullable: false}
          note: {type: string}
          amount: {type: decimal(12,2)}
"""

Ferry = Callable[..., Any]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/shop/shop.yaml": TEAM})


def published(ferry: Ferry, root: Path, ref: str = "shop.notes") -> list[dict[str, Any]]:
    shown = ferry("show", ref, "--model", root, "--json", "--limit", "100")
    assert shown.code == 0, shown
    rows: list[dict[str, Any]] = shown.out and json.loads(shown.out)["rows"]
    return rows


def one_line_failure(result: Any, *parts: str) -> None:
    """The user sees exit 1 and a single line naming every part; no traceback."""
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    for part in parts:
        assert part in lines[0], (part, lines[0])


# --- point 4: bad files -------------------------------------------------------------------

BAD_FILES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("quote.csv", b'id,note,amount\n1,ok,1\n2,"never closed,2\n3,c,3\n',
     ("line 3", "never closed")),
    ("fields.csv", b"id,note,amount\n1,a,1\n2,b,2,extra\n", ("line 3", "4 fields", "header has 3")),
    ("latin1.csv", "id,note,amount\n1,Jos\u00e9,1\n".encode("latin-1"),
     ("line 2", "not UTF-8", "byte 0xe9")),
    ("truncated.parquet", b"", ("cannot read",)),  # filled in by the test
    ("mixed.jsonl", b'{"id": 1, "note": "a", "amount": "1"}\n{"id": "x", "note": "b", "amount": "2"}\n',
     ("column 'id'", "row 1", "'x'")),
    ("nonjson.jsonl", b'{"id": 1, "note": "a", "amount": "1"}\nnot json\n',
     ("line 2", "not valid JSON")),
    ("zero.csv", b"", ("empty (0 bytes)",)),
    ("zero.jsonl", b"", ("empty (0 bytes)",)),
    ("zero.parquet", b"", ("empty (0 bytes)",)),
    ("broken.csv.gz", b"not gzip at all", ("cannot read",)),
]


@pytest.mark.parametrize(("name", "content", "parts"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_one_line_naming_file_place_and_problem(
    root: Path, ferry: Ferry, tmp_path: Path, name: str, content: bytes, parts: tuple[str, ...]
) -> None:
    path = tmp_path / name
    if name == "truncated.parquet":
        table = pa.table({"id": list(range(1000)), "note": ["x"] * 1000,
                          "amount": ["1.00"] * 1000})
        pq.write_table(table, path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    result = ferry("publish", "shop.notes", path, "--model", root)
    one_line_failure(result, name, *parts)
    log = ferry("log", "shop.notes", "--model", root, "--json")
    assert log.code == 1 or json.loads(log.out) == []  # nothing was published


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400),
       suffix=st.sampled_from([".csv", ".jsonl", ".parquet", ".csv.gz", ".tsv"]),
       header=st.booleans())
def test_random_bytes_never_give_a_traceback(
    root: Path, ferry: Ferry, tmp_path: Path, data: bytes, suffix: str, header: bool
) -> None:
    if header and suffix in (".csv", ".tsv"):
        data = b"id,note,amount\n" + data
    if suffix == ".parquet":
        data = b"PAR1" + data + b"PAR1"
    if suffix == ".csv.gz":
        data = gzip.compress(b"id,note,amount\n" + data) if header else data
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    result = ferry("publish", "shop.notes", path, "--model", root)
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    if result.code != 0:
        assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err


def test_compressed_csv_and_jsonl_are_published(root: Path, ferry: Ferry, tmp_path: Path) -> None:
    csv_gz = tmp_path / "notes.csv.gz"
    csv_gz.write_bytes(gzip.compress(b"id,note,amount\n1,a,1.50\n2,b,2\n"))
    assert ferry("publish", "shop.notes", csv_gz, "--model", root).code == 0
    assert [r["amount"] for r in published(ferry, root)] == ["1.50", "2.00"]
    jsonl_gz = tmp_path / "notes.jsonl.gz"
    jsonl_gz.write_bytes(gzip.compress(b'{"id": 3, "note": "c", "amount": "3.25"}\n'))
    assert ferry("publish", "shop.notes", jsonl_gz, "--model", root).code == 0
    assert published(ferry, root) == [{"id": 3, "note": "c", "amount": "3.25"}]


# --- point 5: values stay text ------------------------------------------------------------

NULLISH = ["NULL", "null", "NA", "N/A", "nan", "#N/A", "-nan", "NaN", "None"]
CSV = "id,note,amount\n" + "".join(
    f"{i},{text},{i}\n" for i, text in enumerate(NULLISH, 1)
) + f'{len(NULLISH) + 1},"",\n{len(NULLISH) + 2},,""\n'


def test_csv_texts_stay_text_and_only_an_empty_field_is_missing(
    root: Path, ferry: Ferry, tmp_path: Path
) -> None:
    path = tmp_path / "nullish.csv"
    path.write_text(CSV)
    assert ferry("publish", "shop.notes", path, "--model", root).code == 0
    rows = published(ferry, root)
    assert [r["note"] for r in rows] == [*NULLISH, "", None]  # quoted "" stays an empty string
    assert [r["amount"] for r in rows][-2:] == [None, None]  # empty is missing for a decimal


def test_publish_reads_as_the_files_source_reads(root: Path, ferry: Ferry, tmp_path: Path) -> None:
    """One reader: the same CSV through `ferry publish` and the files source agrees."""
    path = tmp_path / "nullish.csv"
    path.write_text(CSV)
    assert ferry("publish", "shop.notes", path, "--model", root).code == 0
    spec = FilesSpec.model_validate({"kind": "files", "path": str(path)})
    ds = SourceDataset.model_validate({"columns": {"id": "int64", "note": "string",
                                                   "amount": "decimal(12,2)"}})
    read = FilesSource("shop.drop", spec, root).read(
        ReadRequest("shop.notes", ds, ["id", "note", "amount"])).reader.read_all()
    assert read.column("note").to_pylist() == [r["note"] for r in published(ferry, root)]


def test_null_values_is_opt_in_from_the_model_and_the_flag(
    root: Path, ferry: Ferry, tmp_path: Path
) -> None:
    path = tmp_path / "marked.csv"
    path.write_text('id,note,amount\n1,-,-\n2,NULL,1\n3,"NULL",2\n4,N/A,3\n')
    assert ferry("publish", "shop.marked", path, "--model", root).code == 0
    rows = published(ferry, root, "shop.marked")
    assert [r["note"] for r in rows] == [None, None, "NULL", "N/A"]  # quoted text stays text
    assert rows[0]["amount"] is None
    flagged = ferry("publish", "shop.notes", path, "--model", root, "--null-value", "N/A",
                    "--null-value", "-")
    assert flagged.code == 0, flagged
    assert [r["note"] for r in published(ferry, root)] == [None, "NULL", "NULL", None]


def test_nan_in_a_decimal_is_an_error_naming_file_row_and_column(
    root: Path, ferry: Ferry, tmp_path: Path
) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("id,note,amount\n1,a,1.00\n2,b,NaN\n")
    result = ferry("publish", "shop.notes", path, "--model", root)
    one_line_failure(result, "nan.csv", "column 'amount'", "row 1", "id=2", "not a finite number")


def test_undeclared_columns_are_named_in_a_warning(root: Path, ferry: Ferry, tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("id,note,amount,secret_extra\n1,a,1,x\n")
    result = ferry("publish", "shop.notes", path, "--model", root)
    assert result.code == 0 and "column 'secret_extra' is not declared" in result.err


def test_the_examples_own_jsonl_publishes_as_ferry_run_ingests_it(
        ferry: Ferry, tmp_path: Path) -> None:
    """Issue 14 point 8: `ferry publish shop.clicks data/clicks/<day>.jsonl` (dates in ISO
    text, which Arrow's JSON reader would take for timestamps) gives the rows `ferry run
    shop.clicks` gives for the same file: one reader, one conform path."""
    from dataferry.model.scaffold import create_example

    by_publish, by_run = tmp_path / "published", tmp_path / "ran"
    for root in (by_publish, by_run):
        create_example(root)
    days = sorted((by_run / "data" / "clicks").glob("*.jsonl"))
    for extra in days[1:]:
        extra.unlink()
    one_day = by_publish / "data" / "clicks" / days[0].name
    result = ferry("publish", "shop.clicks", one_day, "--model", by_publish)
    assert result.code == 0, result.err
    assert ferry("run", "shop.clicks", "--model", by_run).code == 0

    def rows(root: Path) -> list[dict[str, Any]]:
        return sorted(published(ferry, root, "shop.clicks"), key=lambda r: r["event_id"])

    assert rows(by_publish) == rows(by_run)
    assert rows(by_publish)[0]["day"] == days[0].stem  # a date, not a timestamp
