"""SQL ``predicateHints`` skip files by the same rules as ``jsonPredicateHints``: never a
file that holds a matching row (DuckDB, evaluating the very SQL over each real Parquet
file, is the judge), and whatever is not understood keeps every file."""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dataferry.sharing.predicates import column_kinds, may_match
from dataferry.sharing.sql_hints import sql_hints
from dataferry.store.file_stats import file_stats

SCHEMA = pa.schema([("i", pa.int64()), ("s", pa.string()), ("d", pa.date32()),
                    ("f", pa.float64())])
KINDS = column_kinds(SCHEMA)
STATS = json.dumps({"numRecords": 10, "minValues": {"i": 0, "s": "b", "d": "2021-01-01"},
                    "maxValues": {"i": 9, "s": "m", "d": "2021-12-31"},
                    "nullCount": {"i": 0, "s": 10, "d": 0}})


def _kept(*hints: Any) -> bool:
    return may_match(sql_hints(list(hints), KINDS), STATS, KINDS)


@pytest.mark.parametrize("hint", [
    "i = 50", "50 < i", "-1 >= i", "i between 10 and 20", "i in (11, 12)", "s is not null",
    "i is null", "d < '2021-01-01'", "d > DATE '2021-12-31'", "I = 50", "`i` >= 10",
    "i = 50 and f > 1", "(i = 50 or i = -3)", "not (i is not null)",
    "(`i` > 50L)", "i < -5S", "i > CAST(100 AS INT)",
])
def test_a_hint_the_statistics_rule_out_skips_the_file(hint: str) -> None:
    assert not _kept(hint)


@pytest.mark.parametrize("hint", [
    "i = 5", "i in (11, 5)", "s is null", "d <= DATE '2021-01-01'", "i <> 3", "i != 3",
    "x = 1", "f > 1e9", "i = 5.0", "i = '50'", "s = 50", "d = 20210101", "d < '2021-1-1'",
    "i = 50 or s like 'a%'", "abs(i) = 50", "i + 1 = 50", "t.i = 50", "nonsense ((",
    "", "not (i = 50 and i = 5)", "i in (select 1)", "s = 'it''s'",
    "i > 300Y", "i > CAST('50' AS BIGINT)", "d > TIMESTAMP '2022-01-01 00:00:00'",
])
def test_what_is_not_understood_or_may_match_keeps_the_file(hint: str) -> None:
    assert _kept(hint)


def test_every_hint_must_hold_and_odd_values_keep_every_file() -> None:
    assert not _kept("i = 5", "i = 50")  # the list is a conjunction
    for value in (None, "i = 50", [], [5], [None], ["i = 50"] * 101, {"i": 50}):
        tree = sql_hints(value, KINDS)
        if value == [5] or value == [None]:
            assert tree is not None and may_match(tree, STATS, KINDS)
        elif value != ["i = 50"] * 101:
            assert tree is None, value
        else:
            assert tree is None  # too many hints: none is read
    deep = "(" * 2000 + "i = 50" + ")" * 2000
    assert _kept(deep)


def test_a_literal_of_another_type_than_its_column_is_no_proof() -> None:
    # text bounds of a timestamp compared with a string as text would skip wrongly
    stats = json.dumps({"numRecords": 1, "minValues": {"t": "2021-01-01T09:00:00.000Z"},
                        "maxValues": {"t": "2021-01-01T09:00:00.000Z"}})
    kinds = column_kinds(pa.schema([("t", pa.timestamp("us", "UTC"))]))
    tree = {"op": "lessThan", "children": [{"op": "column", "name": "t",
                                            "valueType": "string"},
                                           {"op": "literal", "value": "2021-01-01 10:00",
                                            "valueType": "string"}]}
    assert may_match(tree, stats, kinds)
    assert may_match(sql_hints(["t < '2021-01-01 10:00'"], kinds), stats, kinds)


# --- the property: a file holding a matching row is never skipped -----------------------

_DAY0 = date(2021, 1, 1)
ints = st.integers(-20, 20)
texts = st.text(alphabet="abcXé", max_size=3)
days = st.integers(0, 40).map(lambda n: _DAY0 + timedelta(days=n))
rows = st.tuples(st.none() | ints, st.none() | texts, st.none() | days,
                 st.none() | st.floats(-5, 5, allow_nan=False))


def _literal(column: str) -> st.SearchStrategy[str]:
    right = {"i": ints.map(str), "s": texts.map(lambda t: f"'{t}'"),
             "d": days.map(lambda d: f"'{d.isoformat()}'")
             | days.map(lambda d: f"DATE '{d.isoformat()}'"),
             "f": st.floats(-5, 5, allow_nan=False).map(lambda x: f"{x:.3f}")}[column]
    # literals of another type than the column's (DuckDB casts some, refuses others)
    wrong = {"i": ints.map(lambda n: f"'{n}'") | st.just("1.5"),
             "s": ints.map(str), "d": st.just("'2021-01-05 00:00:00'"),
             "f": ints.map(str)}[column]
    return st.one_of(right, right, right, wrong)


@st.composite
def _comparison(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(["i", "s", "d", "f"]))
    name = draw(st.sampled_from([column, column.upper(), f"`{column}`"]))
    shape = draw(st.sampled_from(["op", "flipped", "null", "not null", "between", "in",
                                  "junk"]))
    if shape == "null":
        return f"{name} IS NULL"
    if shape == "not null":
        return f"{name} IS NOT NULL"
    if shape == "between":
        return f"{name} BETWEEN {draw(_literal(column))} AND {draw(_literal(column))}"
    if shape == "in":
        items = draw(st.lists(_literal(column), min_size=1, max_size=3))
        return f"{name} IN ({', '.join(items)})"
    if shape == "junk":
        return draw(st.sampled_from([f"{name} LIKE 'a%'", "abs(i) > 3", "i + 1 > 3",
                                     "length(s) = 2", "i = i"]))
    op = draw(st.sampled_from(["=", "<", "<=", ">", ">=", "<>", "!="]))
    literal = draw(_literal(column))
    return f"{name} {op} {literal}" if shape == "op" else f"{literal} {op} {name}"


def _expressions(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _comparison()
    inner = _expressions(depth - 1)
    return st.one_of(
        _comparison(),
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"NOT ({e})"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(rows, max_size=6), min_size=1, max_size=3),
       st.lists(_expressions(2), min_size=1, max_size=2))
def test_skipping_never_drops_a_file_that_holds_a_matching_row(
        files: list[list[tuple[Any, ...]]], hints: list[str]) -> None:
    tree = sql_hints(hints, KINDS)
    where = " AND ".join(f"({hint})" for hint in hints)
    with tempfile.TemporaryDirectory() as folder, duckdb.connect() as db:
        for number, content in enumerate(files):
            path = Path(folder) / f"part-{number}.parquet"
            columns: list[Any] = list(zip(*content, strict=True)) if content else [[]] * 4
            pq.write_table(pa.table([pa.array(list(c), f.type) for c, f in
                                     zip(columns, SCHEMA, strict=True)], schema=SCHEMA), path)
            try:
                found = db.execute(f"select count(*) from read_parquet('{path}') "
                                   f"where {where}").fetchone()
            except duckdb.Error:
                return  # SQL DuckDB refuses (a cast it cannot make): no judge here
            stats = json.dumps(file_stats(path))
            kept = may_match(tree, stats, KINDS)
            event("file kept" if kept else "file skipped")
            if found is not None and found[0] > 0:
                assert kept, (hints, content, stats)
