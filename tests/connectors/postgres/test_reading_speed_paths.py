"""The fast paths of the PostgreSQL source: numerics read as text, ADBC's batch size, and
how many parallel streams it opens by default (against the real server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.postgres import ranges
from dataferry.connectors.postgres.reading import NUMERIC, TypeInfo, plan_column
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.errors import SourceError
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import PostgresSource as SourceSpec
from tests.connectors.pg_helpers import temporary_database


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def _typmod(precision: int, scale: int) -> int:
    return ((precision << 16) | scale) + 4


def test_a_numeric_with_a_precision_is_selected_as_text() -> None:
    info = TypeInfo(NUMERIC, _typmod(12, 2), "numeric(12,2)", "b", 0, "")
    plan = plan_column("amount", "amount", info)
    assert plan.expr == '"amount"::text'
    assert str(plan.field.type) == "decimal128(12, 2)"
    free = plan_column("n", "n", TypeInfo(NUMERIC, -1, "numeric", "b", 0, ""))
    assert free.expr == '"n"::text'  # unconstrained too: the server's text is cheaper


def _read(dsn: str, table: str, columns: dict[str, str]) -> list[dict[str, object]]:
    src = PostgresSource("crm.db", SourceSpec(kind="postgres", dsn=dsn), Path("."))
    spec = SourceDataset(table=table, columns={n: Column(type=t) for n, t in columns.items()})
    try:
        return src.read(ReadRequest("crm.t", spec, list(columns))).reader.read_all().to_pylist()
    finally:
        src.close()


def test_numeric_text_parses_exactly_and_names_special_values(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table money (n numeric(38,10), m numeric(5,2)[], s numeric(6,3))")
        db.execute("insert into money values (-1234567890123456789012345678.0123456789, "
                   "'{1.50,NULL,-0.01}', 0), (null, null, null)")
    rows = _read(dsn, "money", {"n": "decimal(38,10)", "m": "list<decimal(5,2)>",
                                "s": "decimal(6,3)"})
    assert rows[0] == {"n": Decimal("-1234567890123456789012345678.0123456789"),
                       "m": [Decimal("1.50"), None, Decimal("-0.01")], "s": Decimal("0.000")}
    assert rows[1] == {"n": None, "m": None, "s": None}
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table odd (n numeric(10,2))")
        db.execute("insert into odd values ('NaN')")  # PostgreSQL prints NaN, ADBC nan
    with pytest.raises(SourceError, match="column n has the value 'nan'"):
        _read(dsn, "odd", {"n": "decimal(10,2)"})


def test_batches_stay_small_enough_to_start_writing_early(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table wide (id int, t text)")
        db.execute("insert into wide select g, repeat('x', 100) from generate_series(1, 100000) g")
    src = PostgresSource("crm.db", SourceSpec(kind="postgres", dsn=dsn), Path("."))
    spec = SourceDataset(table="wide", columns={"id": Column(type="int32"),
                                                "t": Column(type="string")})
    sizes = [b.num_rows for b in src.read(ReadRequest("crm.t", spec, ["id", "t"],
                                                      batch_rows=1 << 20)).reader]
    src.close()
    assert sum(sizes) == 100000 and len(sizes) > 1  # ~4 MB each, not one 16 MB batch


def test_a_wide_result_comes_in_fewer_larger_batches(dsn: str) -> None:
    """Conform and encode cost about the same per batch and column whatever its rows:
    24 columns come in batches of up to 16 MB, not 4 MB (still more than one)."""
    names = [f"c{i}" for i in range(24)]
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"create table many ({', '.join(f'{n} text' for n in names)})")
        db.execute(f"insert into many select {', '.join('repeat(md5(g::text), 2)' for _ in names)} "
                   "from generate_series(1, 30000) g")  # ~50 MB of Arrow data
    src = PostgresSource("crm.db", SourceSpec(kind="postgres", dsn=dsn), Path("."))
    spec = SourceDataset(table="many", columns={n: Column(type="string") for n in names})
    sizes = [b.num_rows for b in src.read(ReadRequest("crm.t", spec, names,
                                                      batch_rows=1 << 20)).reader]
    src.close()
    assert sum(sizes) == 30000 and 1 < len(sizes) <= 5  # 4 MB batches: 12 or more


@pytest.mark.parametrize(("cores", "given", "expected"), [
    (2, None, 1), (1, None, 1), (4, None, 2), (16, None, 4), (2, "3", 3), (2, "x", 1),
    (8, "0", 4),
])
def test_parallel_streams_default_to_half_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, given: str | None, expected: int,
) -> None:
    monkeypatch.setattr(ranges.os, "cpu_count", lambda: cores)
    if given is None:
        monkeypatch.delenv("FERRY_PG_READERS", raising=False)
    else:
        monkeypatch.setenv("FERRY_PG_READERS", given)
    assert ranges.readers() == expected
