"""Shared cases for the file-based sinks' tests (SQLite, DuckDB, Parquet): deliveries of two
versions in every mode, the rows each mode must leave, and a delivery killed mid-load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time as clock
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import TypeAdapter

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN, Delivery, SinkConnector
from dataferry.connectors.parquet.types import file_type
from dataferry.connectors.registry import sink_class
from dataferry.model.spec import Column, Sink
from dataferry.model.types import parse_type, to_arrow_field
from dataferry.store.conform import Conformer

REPO = Path(__file__).resolve().parents[2]
COLUMNS = [("id", "int64", False), ("name", "string", True), ("qty", "int32", True)]
T1 = datetime(2026, 1, 1, 12, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 12, 30, 15, 123456, tzinfo=UTC)

V1 = [(1, "a", 1), (2, "b", 2), (3, "c", 3)]
V2 = [(1, "a", 1), (2, "B", 20), (4, "d", 4)]
CHANGES = [(2, "B", 20, "upsert"), (3, None, None, "delete"), (4, "d", 4, "upsert")]

EXPECTED: dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = {
    "replace": (V1, V2),
    "merge": (V1, V2),
    "append": ([(*r, 1) for r in V1], [*[(*r, 1) for r in V1], (4, "d", 4, 2)]),
    "history": (
        [(*r, T1, None) for r in V1],
        [(1, "a", 1, T1, None), (2, "B", 20, T2, None), (2, "b", 2, T1, T2),
         (3, "c", 3, T1, T2), (4, "d", 4, T2, None)],
    ),
}
"""Per mode: the target's rows after version 1, and after version 2 (sorted)."""


def make_sink(spec: dict[str, Any], root: Path) -> SinkConnector:
    parsed = TypeAdapter(Sink).validate_python(spec)
    sink: SinkConnector = sink_class(parsed.kind)("shop.reporting", parsed, root)
    return sink


def schema(columns: list[tuple[str, str, bool]], extra: list[pa.Field] | None = None) -> pa.Schema:
    return pa.schema([to_arrow_field(n, parse_type(t), nl) for n, t, nl in columns]
                     + (extra or []))


def delivery(mode: str, version: int, previous: int | None,
             batches: list[pa.RecordBatch] | Iterator[pa.RecordBatch], row_schema: pa.Schema,
             *, columns: list[tuple[str, str, bool]] = COLUMNS, table: str = "items",
             created_at: datetime | None = None) -> Delivery:
    return Delivery(
        dataset="shop.items", consumer="shop.reporting", table=table, mode=mode,
        columns=[(n, parse_type(t), nl) for n, t, nl in columns], primary_key=["id"],
        version=version, previous=previous, created_at=created_at or (T1 if version == 1 else T2),
        rows=pa.RecordBatchReader.from_batches(row_schema, iter(batches)))


def _rows_delivery(mode: str, version: int, previous: int | None,
                   rows: list[tuple[Any, ...]], extra: pa.Field | None) -> Delivery:
    row_schema = schema(COLUMNS, [extra] if extra is not None else [])
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in row_schema]
    arrays = [pa.array(list(c), f.type) for c, f in zip(columns, row_schema, strict=True)]
    batch = pa.RecordBatch.from_arrays(arrays, schema=row_schema)
    return delivery(mode, version, previous, [batch], row_schema)


def first(mode: str) -> Delivery:
    """Version 1 of the items in ``mode``'s form."""
    if mode in ("merge", "history"):
        return _rows_delivery(mode, 1, None, [(*r, "upsert") for r in V1],
                              pa.field(OP_COLUMN, pa.string()))
    if mode == "append":
        return _rows_delivery(mode, 1, None, [(*r, 1) for r in V1],
                              pa.field(VERSION_COLUMN, pa.int64()))
    return _rows_delivery(mode, 1, None, V1, None)


def second(mode: str) -> Delivery:
    """Version 2: id 2 changed, id 3 removed, id 4 added."""
    if mode in ("merge", "history"):
        return _rows_delivery(mode, 2, 1, CHANGES, pa.field(OP_COLUMN, pa.string()))
    if mode == "append":
        return _rows_delivery(mode, 2, 1, [(4, "d", 4, 2)], pa.field(VERSION_COLUMN, pa.int64()))
    return _rows_delivery(mode, 2, 1, V2, None)


def run_two_versions(sink: SinkConnector, mode: str,
                     read: Callable[[str], list[tuple[Any, ...]]]) -> None:
    """Version 1, version 2 as a change set, the same version again: rows exactly as expected."""
    after_first, after_second = EXPECTED[mode]
    assert sink.applied_version("shop.items", "items") is None
    assert sink.deliver(first(mode)) == 3
    assert sorted(read("items"), key=_order) == after_first
    assert sink.applied_version("shop.items", "items") == 1
    assert sink.deliver(second(mode)) == len(CHANGES if mode in ("merge", "history") else
                                             ([1] if mode == "append" else V2))
    assert sorted(read("items"), key=_order) == after_second
    assert sink.applied_version("shop.items", "items") == 2
    assert sink.applied_version("shop.other", "items") is None
    assert sink.deliver(second(mode)) == 0  # already applied: nothing changes
    assert sorted(read("items"), key=_order) == after_second


def _order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if not isinstance(v, datetime) else v.timestamp()) for v in row)


# --- a delivery killed in the middle -------------------------------------------------------

BIG_BATCHES, BIG_ROWS = 3, 20_000


def big_batches(mode: str, marker: Path | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Version 2 of many new items (ids from 1000); with ``marker``, the stream writes it
    after the first batch was taken and then hangs (the test kills the process)."""
    extra = {"append": [pa.field(VERSION_COLUMN, pa.int64())],
             "merge": [pa.field(OP_COLUMN, pa.string())]}.get(mode, [])
    row_schema = schema(COLUMNS, extra)

    def batches() -> Iterator[pa.RecordBatch]:
        for index in range(BIG_BATCHES):
            if index == 1 and marker is not None:
                marker.write_text("first batch taken")
                clock.sleep(120)
            ids = range(1000 + index * BIG_ROWS, 1000 + (index + 1) * BIG_ROWS)
            arrays = [pa.array(ids, pa.int64()), pa.array([f"n{i}" for i in ids]),
                      pa.array([i % 1000 for i in ids], pa.int32())]
            if mode == "append":
                arrays.append(pa.array([2] * BIG_ROWS, pa.int64()))
            if mode == "merge":
                arrays.append(pa.array(["upsert"] * BIG_ROWS))
            yield pa.RecordBatch.from_arrays(arrays, schema=row_schema)

    return row_schema, batches()


def big_delivery(mode: str, marker: Path | None = None) -> Delivery:
    row_schema, batches = big_batches(mode, marker)
    return delivery(mode, 2, 1, batches, row_schema)


_CHILD = """
import json, sys
from pathlib import Path
from tests.connectors.embedded import big_delivery, make_sink
args = json.loads(sys.argv[1])
sink = make_sink(args["spec"], Path(args["root"]))
sink.deliver(big_delivery(args["mode"], Path(args["marker"])))
"""


def kill_mid_delivery(spec: dict[str, Any], root: Path, mode: str) -> None:
    """Run ``big_delivery`` in a child process and SIGKILL it after its first batch."""
    marker = root / f"marker-{mode}"
    marker.unlink(missing_ok=True)
    args = json.dumps({"spec": spec, "root": str(root), "mode": mode, "marker": str(marker)})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, args], cwd=REPO, env=env,
                             stderr=subprocess.PIPE)
    try:
        deadline = clock.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                raise AssertionError(f"the delivery ended early: {child.stderr.read()!r}")  # type: ignore[union-attr]
            assert clock.monotonic() < deadline, "the child never took its first batch"
            clock.sleep(0.05)
        clock.sleep(0.2)  # let the first batch land in the target
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def check_kill(spec: dict[str, Any], root: Path, mode: str,
               read: Callable[[str], list[tuple[Any, ...]]]) -> None:
    """Kill a big version 2 mid-load: nothing changes; the re-run applies it exactly once."""
    sink = make_sink(spec, root)
    assert sink.deliver(first(mode)) == 3
    before = sorted(read("items"), key=_order)
    kill_mid_delivery(spec, root, mode)
    sink = make_sink(spec, root)
    assert sorted(read("items"), key=_order) == before
    assert sink.applied_version("shop.items", "items") == 1
    assert sink.deliver(big_delivery(mode)) == BIG_BATCHES * BIG_ROWS
    after = read("items")
    expected = BIG_BATCHES * BIG_ROWS + (3 if mode in ("append", "merge") else 0)
    assert len(after) == expected
    assert len({row[0] for row in after}) == expected
    assert sink.applied_version("shop.items", "items") == 2
    assert sink.deliver(big_delivery(mode)) == 0
    assert len(read("items")) == expected


# --- every type -----------------------------------------------------------------------------

_UUID1, _UUID2 = "0b3c2f8e-9d6a-4c1e-8f7a-2a1b3c4d5e6f", "ffffffff-0000-4000-8000-000000000001"
_TZ = timezone(timedelta(hours=5, minutes=30))
ALL_TYPES: list[tuple[str, str, list[Any]]] = [
    ("id", "int64", [1, 2, 3]),
    ("b", "bool", [True, False, None]),
    ("i8", "int8", [-128, 127, None]),
    ("i16", "int16", [-32768, 32767, None]),
    ("i32", "int32", [-(2**31), 2**31 - 1, None]),
    ("i64", "int64", [-(2**63), 2**63 - 1, None]),
    ("u8", "uint8", [0, 255, None]),
    ("u16", "uint16", [0, 65535, None]),
    ("u32", "uint32", [0, 2**32 - 1, None]),
    ("u64", "uint64", [0, 2**64 - 1, None]),
    ("f16", "float16", [1.5, -65504.0, None]),
    ("bf16", "bfloat16", [1.5, -3.0, None]),
    ("f8", "float8_e4m3", [0.5, 448.0, None]),
    ("f32", "float32", [1.25, -3.0e38, None]),
    ("f64", "float64", [0.1, -1e308, None]),
    ("dec", "decimal(12,2)", [Decimal("12.50"), Decimal("-9999999999.99"), None]),
    ("wide", "decimal(50,10)", ["1234567890123456789012345678901234567890.0123456789",
                                "-0.0000000001", None]),
    ("s", "string", ["héllo, wörld", "", None]),
    ("s5", "string(5)", ["abcde", "x", None]),
    ("bin", "binary", [b"\x00\xff\x10", b"", None]),
    ("d", "date", [date(2024, 2, 29), date(1970, 1, 1), None]),
    ("t", "time", [time(23, 59, 59, 999999), time(0, 0), None]),
    ("ts", "timestamp", [datetime(2024, 1, 1, 1, 2, 3, 4), datetime(1969, 7, 20, 20, 17, 40),
                         None]),
    ("tz", "timestamp_tz", [datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=UTC),
                            datetime(2024, 6, 1, 12, tzinfo=_TZ), None]),
    ("u", "uuid", [_UUID1, _UUID2, None]),
    ("j", "json", ['{"a":[1,2.5,"x"],"b":null}', "[]", None]),
    ("ls", "list<string>", [["a", "b"], [], None]),
    ("li", "list<int64>", [[1, None, -3], [], None]),
    ("lb", "list<binary>", [[b"\x00\x01", b"z"], [], None]),
    ("lu", "list<uuid>", [[_UUID1], [], None]),
    ("ltz", "list<timestamp_tz>", [[datetime(2024, 1, 1, tzinfo=UTC)], [], None]),
    ("m", "map<string,int64>", [[("k", 1), ("l", None)], [], None]),
    ("mi", "map<int32,string>", [[(1, "one"), (2, "two")], [], None]),
    ("st", "struct<a:int64, b:list<decimal(10,2)>, c:string>",
     [{"a": 1, "b": [Decimal("1.25")], "c": "x"}, {"a": None, "b": [], "c": None}, None]),
]
"""(column, declared type, values in a friendly form) for round trips through a sink."""


def all_types_batch() -> pa.RecordBatch:
    """One batch of ``ALL_TYPES`` in the declared types' natural Arrow form (via conform)."""
    arrays = [pa.array(values, file_type(parse_type(t))) for _, t, values in ALL_TYPES]
    table = pa.Table.from_arrays(arrays, names=[n for n, _, _ in ALL_TYPES])
    return Conformer("shop.all", all_types_columns(), ["id"]).conform(table)


def all_types_columns() -> dict[str, Column]:
    return {n: Column(type=t, nullable=n != "id") for n, t, _ in ALL_TYPES}


def conform_all(data: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    return Conformer("shop.all", all_types_columns(), ["id"]).conform(data)


def all_types_delivery(table: str = "all_types") -> Delivery:
    batch = all_types_batch()
    columns = [(n, t, n != "id") for n, t, _ in ALL_TYPES]
    return delivery("replace", 1, None, [batch], batch.schema, columns=columns, table=table)
