"""Other programs see the types of the columns the SQLite sink declares (issue 14 point 5):
SQLAlchemy's reflection and Python's ``sqlite3`` with ``detect_types=PARSE_DECLTYPES``; and
a table an earlier dataferry declared with TEXT columns still takes deliveries."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from dataferry.connectors.base import OP_COLUMN
from tests.connectors.embedded import ALL_TYPES, all_types_delivery, delivery, make_sink, schema

SPEC = {"kind": "sqlite", "path": "out/target.db"}


def _delivered(root: Path) -> Path:
    assert make_sink(SPEC, root).deliver(all_types_delivery()) == 3
    return root / "out" / "target.db"


def test_sqlalchemy_reflects_the_declared_types_and_reads_the_values(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{_delivered(tmp_path)}")
    try:
        reflected = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("all_types")}
        assert isinstance(reflected["dec"], sa.DECIMAL)
        assert (reflected["dec"].precision, reflected["dec"].scale) == (12, 2)
        assert isinstance(reflected["d"], sa.DATE) and isinstance(reflected["t"], sa.TIME)
        assert isinstance(reflected["ts"], sa.TIMESTAMP)
        assert isinstance(reflected["tz"], sa.TIMESTAMP)
        assert isinstance(reflected["j"], sa.JSON)
        assert isinstance(reflected["u"], sa.TEXT)  # SQLAlchemy has no SQLite UUID
        table = sa.Table("all_types", sa.MetaData(), autoload_with=engine)
        with engine.connect() as con:
            row = con.execute(sa.select(table).where(table.c.id == 1)).mappings().one()
    finally:
        engine.dispose()
    assert row["dec"] == Decimal("12.50") and row["d"] == date(2024, 2, 29)
    assert row["t"] == time(23, 59, 59, 999999)
    assert row["ts"] == datetime(2024, 1, 1, 1, 2, 3, 4)
    assert row["tz"] == datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=UTC)
    assert row["j"] == {"a": [1, 2.5, "x"], "b": None}
    assert row["u"] == ALL_TYPES[24][2][0]


def test_python_sqlite3_parse_decltypes_converts_dates_and_timestamps(tmp_path: Path) -> None:
    con = sqlite3.connect(_delivered(tmp_path), detect_types=sqlite3.PARSE_DECLTYPES)
    try:
        rows = con.execute("SELECT d, ts, tz, typeof(d), typeof(u), typeof(wide) FROM all_types "
                           "ORDER BY id").fetchall()
        declared = {r[1]: r[2] for r in con.execute("PRAGMA table_info(all_types)")}
    finally:
        con.close()
    assert rows[0][:3] == (date(2024, 2, 29), datetime(2024, 1, 1, 1, 2, 3, 4),
                           datetime(2024, 1, 1, 1, 2, 3, 4))
    assert rows[1][:3] == (date(1970, 1, 1), datetime(1969, 7, 20, 20, 17, 40),
                           datetime(2024, 6, 1, 6, 30))
    assert rows[2][:3] == (None, None, None)
    assert rows[0][3:] == ("text", "text", "text")  # ISO and exact text stay text
    assert {n: declared[n] for n in ("dec", "wide", "d", "t", "ts", "tz", "u", "j")} == {
        "dec": "DECIMAL(12,2)", "wide": "TEXT", "d": "DATE", "t": "TIME", "ts": "TIMESTAMP",
        "tz": "TIMESTAMP", "u": "UUID TEXT", "j": "JSON"}


def test_a_table_made_with_text_columns_keeps_them_and_its_timestamp_form(
        tmp_path: Path) -> None:
    """Tables an earlier dataferry made declare TEXT for these types and hold timestamps as
    ``YYYY-MM-DDTHH:MM:SS``: they keep both, so a merge on a timestamp key still matches."""
    db = tmp_path / "out" / "target.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as con:
        con.execute('CREATE TABLE events ("at" TEXT NOT NULL, "day" TEXT, "amount" TEXT, '
                    '"ref" TEXT, PRIMARY KEY ("at"))')
        con.execute("INSERT INTO events VALUES ('2026-01-01T12:00:00.000000', '2026-01-01', "
                    "'1.50', '0b3c2f8e-9d6a-4c1e-8f7a-2a1b3c4d5e6f')")
    columns = [("at", "timestamp", False), ("day", "date", True), ("amount", "decimal(12,2)", True),
               ("ref", "uuid", True)]
    rows = schema(columns, [pa.field(OP_COLUMN, pa.string())])
    batch = pa.RecordBatch.from_pylist([
        {"at": datetime(2026, 1, 1, 12), "day": date(2026, 1, 2), "amount": Decimal("2.50"),
         "ref": None, OP_COLUMN: "upsert"},
        {"at": datetime(2026, 1, 3, 8), "day": None, "amount": Decimal("0.10"), "ref": None,
         OP_COLUMN: "upsert"}], schema=rows)
    sink = make_sink(SPEC, tmp_path)
    merge = delivery("merge", 1, None, [batch], rows, columns=columns, table="events")
    assert sink.deliver(replace(merge, primary_key=["at"])) == 2
    with sqlite3.connect(db) as con:
        declared = [r[2] for r in con.execute("PRAGMA table_info(events)")]
        got = con.execute("SELECT * FROM events ORDER BY 1").fetchall()
    assert declared == ["TEXT", "TEXT", "TEXT", "TEXT"]
    assert got == [("2026-01-01T12:00:00.000000", "2026-01-02", "2.50", None),
                   ("2026-01-03T08:00:00.000000", None, "0.10", None)]
