"""Quality checks over real Parquet files, read by a real DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import TypeAdapter

from dataferry.errors import StoreError
from dataferry.model.spec import AnyCheck, Check
from dataferry.store.quality import CheckFailure, QualityError, enforce_checks, run_checks

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_CHECK: TypeAdapter[AnyCheck] = TypeAdapter(Check)


def checks(*specs: dict[str, Any]) -> list[AnyCheck]:
    """Checks as the model files write them, e.g. ``{"unique": ["id"]}``."""
    return [_CHECK.validate_python(spec) for spec in specs]


@pytest.fixture
def write(tmp_path: Path) -> Any:
    count = 0

    def make(data: dict[str, Any] | pa.Table) -> str:
        nonlocal count
        count += 1
        path = tmp_path / f"part-{count}.parquet"
        pq.write_table(data if isinstance(data, pa.Table) else pa.table(data), path)
        return str(path)

    return make


def run(files: list[str], *specs: dict[str, Any], key: tuple[str, ...] = ("id",),
        **kwargs: Any) -> list[CheckFailure]:
    return run_checks("shop.orders", checks(*specs), list(key), files, now=NOW, **kwargs)


def one(failures: list[CheckFailure]) -> CheckFailure:
    assert len(failures) == 1, failures
    return failures[0]


# --- not_null --------------------------------------------------------------------------


def test_not_null_passes_and_counts_nulls_per_column(write: Any) -> None:
    files = [write({"id": [1, 2, 3, 4], "name": ["a", None, "c", None],
                    "city": ["x", "y", None, "z"]})]
    assert run(files, {"not_null": ["id"]}) == []
    name, city = run(files, {"not_null": ["id", "name", "city"]})
    assert (name.check, name.column, name.failing_rows) == ("not_null", "name", 2)
    assert name.examples == [{"id": 2}, {"id": 4}]
    assert name.message == (
        'shop.orders: check not_null(name) failed: 2 of 4 rows have no name, e.g. {"id": 2}, '
        '{"id": 4}; fill in name at the source, or remove it from not_null if it may be empty')
    assert (city.column, city.failing_rows, city.examples) == ("city", 1, [{"id": 3}])


def test_not_null_on_a_key_column_names_rows_by_number(write: Any) -> None:
    files = [write({"id": [1, None]}), write({"id": [None, 4, 5]})]
    failure = one(run(files, {"not_null": ["id"]}))
    assert failure.failing_rows == 2
    assert failure.examples == [{"row": 2}, {"row": 3}]  # numbered through both files


def test_examples_are_at_most_three_and_the_smallest_keys(write: Any) -> None:
    files = [write({"id": list(range(100, 0, -1)), "v": [None] * 100})]
    failure = one(run(files, {"not_null": ["v"]}))
    assert failure.failing_rows == 100
    assert failure.examples == [{"id": 1}, {"id": 2}, {"id": 3}]


# --- unique ----------------------------------------------------------------------------


def test_unique_passes(write: Any) -> None:
    assert run([write({"id": [1, 2, 3]})], {"unique": ["id"]}) == []


def test_unique_counts_duplicate_keys_across_files(write: Any) -> None:
    files = [write({"id": [7, 9, 1, 9]}), write({"id": [7, 2, 9]})]  # an append's old + new
    failure = one(run(files, {"unique": ["id"]}))
    assert (failure.check, failure.column, failure.failing_rows) == ("unique", "id", 2)
    assert failure.examples == [{"id": 7}, {"id": 9}]
    assert failure.message == (
        'shop.orders: check unique(id) failed: 2 duplicate keys (5 rows), e.g. {"id": 7}, '
        '{"id": 9}; fix the source data or the primary key')


def test_unique_on_a_composite_key(write: Any) -> None:
    files = [write({"order": [1, 1, 2, 2, 2], "line": [1, 2, 1, 1, 3], "qty": [1] * 5})]
    assert run(files, {"unique": ["order"]}, key=("order", "line"))  # not unique alone
    failure = one(run(files, {"unique": ["order", "line"]}, key=("order", "line")))
    assert failure.column is None
    assert failure.failing_rows == 1
    assert failure.examples == [{"order": 2, "line": 1}]
    assert "unique(order, line) failed: 1 duplicate key (2 rows)" in failure.message


def test_unique_ignores_rows_with_a_null_in_the_key(write: Any) -> None:
    files = [write({"a": [1, 1, None, None], "b": [None, None, 2, 2]})]
    assert run(files, {"unique": ["a", "b"]}, key=()) == []
    assert run(files, {"unique": ["a"]}, key=())[0].examples == [{"a": 1}]


# --- accepted_values -------------------------------------------------------------------


def test_accepted_values_shows_the_offending_value(write: Any) -> None:
    files = [write({"id": [1, 2, 3, 4, 5], "country": ["NZ", "XX", None, "AU", "de"]})]
    spec = {"accepted_values": {"column": "country", "values": ["NZ", "AU", "DE"]}}
    failure = one(run(files, spec))
    assert (failure.check, failure.column, failure.failing_rows) == ("accepted_values", "country", 2)
    assert failure.examples == [{"id": 2, "country": "XX"}, {"id": 5, "country": "de"}]
    assert failure.message.startswith(
        'shop.orders: check accepted_values(country) failed: 2 of 5 rows have country not '
        'in ["NZ", "AU", "DE"], e.g. {"id": 2, "country": "XX"}')
    assert failure.message.endswith("fix the source data or add the values to accepted_values")
    spec["accepted_values"]["values"] += ["XX", "de"]  # type: ignore[index]
    assert run(files, spec) == []


def test_accepted_values_compare_text_columns_as_text_and_others_typed(write: Any) -> None:
    files = [write({"id": [1, 2], "code": ["1", "2"], "level": [1, 3], "on": [True, False],
                    "price": pa.array([Decimal("1.50"), Decimal("2.00")], pa.decimal128(5, 2))})]
    assert run(files, {"accepted_values": {"column": "code", "values": [1, 2]}}) == []
    failure = one(run(files, {"accepted_values": {"column": "level", "values": [1, 2]}}))
    assert failure.examples == [{"id": 2, "level": 3}]
    assert run(files, {"accepted_values": {"column": "on", "values": [True, False]}}) == []
    assert run(files, {"accepted_values": {"column": "price", "values": [1.5, "2"]}}) == []


def test_accepted_values_without_a_key_names_rows(write: Any) -> None:
    files = [write({"kind": ["a", "b"]}), write({"kind": ["a", "z"]})]
    failure = one(run(files, {"accepted_values": {"column": "kind", "values": ["a", "b"]}},
                      key=()))
    assert failure.examples == [{"row": 4, "kind": "z"}]


# --- range -----------------------------------------------------------------------------


def test_range_on_decimals(write: Any) -> None:
    amounts = [Decimal("0.00"), Decimal("-0.01"), Decimal("100.00"), Decimal("100.01"), None]
    files = [write({"id": [1, 2, 3, 4, 5], "amount": pa.array(amounts, pa.decimal128(12, 2))})]
    assert run(files, {"range": {"column": "amount", "min": -1, "max": 101}}) == []
    failure = one(run(files, {"range": {"column": "amount", "min": 0, "max": 100}}))
    assert (failure.check, failure.column, failure.failing_rows) == ("range", "amount", 2)
    assert failure.examples == [{"id": 2, "amount": "-0.01"}, {"id": 4, "amount": "100.01"}]
    assert "2 of 5 rows have amount outside 0..100" in failure.message
    assert failure.message.endswith("fix the source data or widen the range")
    # A bound finer than the column's scale is compared exactly, not rounded.
    below = one(run(files, {"range": {"column": "amount", "min": "-0.005"}}))
    assert below.examples == [{"id": 2, "amount": "-0.01"}]
    assert "below -0.005" in below.message


def test_range_on_dates_and_timestamps(write: Any) -> None:
    files = [write({
        "id": [1, 2, 3],
        "day": [date(2025, 12, 31), date(2026, 1, 1), date(2026, 2, 1)],
        "at": pa.array([datetime(2026, 1, 1, 0, 30, tzinfo=UTC)] * 2 + [None],
                       pa.timestamp("us", "UTC")),
        "local": [datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 11), None],
    })]
    failure = one(run(files, {"range": {"column": "day", "min": "2026-01-01",
                                        "max": "2026-01-31"}}))
    assert failure.examples == [{"id": 1, "day": "2025-12-31"}, {"id": 3, "day": "2026-02-01"}]
    # An offset is honoured: 01:00+01:00 is 00:00 UTC, before 00:30 UTC.
    assert run(files, {"range": {"column": "at", "min": "2026-01-01T01:00:00+01:00"}}) == []
    failure = one(run(files, {"range": {"column": "at", "max": "2026-01-01T00:00:00Z"}}))
    assert failure.examples[0] == {"id": 1, "at": "2026-01-01T00:30:00+00:00"}
    assert one(run(files, {"range": {"column": "local", "max": "2026-01-01T10:00"}})).examples \
        == [{"id": 2, "local": "2026-01-01T11:00:00"}]


def test_range_bound_that_does_not_fit_the_column_fails_clearly(write: Any) -> None:
    files = [write({"id": [1], "day": [date(2026, 1, 1)], "n": [1]})]
    failure = one(run(files, {"range": {"column": "day", "min": 5}}))
    assert failure.failing_rows == 0
    assert "range(day) cannot run: range bound 5 does not fit column day of type DATE" \
        in failure.message
    assert "cannot run" in one(run(files, {"range": {"column": "n", "max": "lots"}})).message


def test_checks_work_on_every_timestamp_unit(write: Any) -> None:
    at = datetime(2026, 3, 1, 11, 30, 0, 5, tzinfo=UTC)
    files = [write({"id": [1, 2],
                    "ns": pa.array([at.replace(tzinfo=None)] * 2, pa.timestamp("ns")),
                    "ms": pa.array([at.replace(tzinfo=None, microsecond=0)] * 2, pa.timestamp("ms")),
                    "nstz": pa.array([at] * 2, pa.timestamp("ns", "UTC"))})]
    for column in ("ns", "ms", "nstz"):
        assert run(files, {"freshness": {"column": column, "max_age": "30m"}}) == []
        assert run(files, {"freshness": {"column": column, "max_age": "29m"}})
        assert run(files, {"range": {"column": column, "min": "2026-03-01T11:30:00Z"}}) == []
        failure = one(run(files, {"range": {"column": column, "max": "2026-03-01T11:00:00"}}))
        assert failure.failing_rows == 2
    dup = one(run(files, {"unique": ["nstz"]}))
    assert dup.examples == [{"nstz": "2026-03-01T11:30:00.000005+00:00"}]
    assert run(files, {"accepted_values": {"column": "nstz",
                                           "values": ["2026-03-01T12:30:00.000005+01:00"]}}) == []


def test_accepted_values_of_the_wrong_type_fail_clearly(write: Any) -> None:
    files = [write({"id": [1], "day": [date(2026, 1, 1)], "f": pa.array([0.2], pa.float32())})]
    failure = one(run(files, {"accepted_values": {"column": "day", "values": ["soon"]}}))
    assert "accepted_values(day) cannot run: accepted value 'soon' is not a valid DATE" \
        in failure.message
    failure = one(run(files, {"accepted_values": {"column": "day", "values": [3]}}))
    assert "cannot run" in failure.message and failure.failing_rows == 0
    # A float32 value shows as written, and compares as the column stores it.
    assert run(files, {"accepted_values": {"column": "f", "values": [0.2]}}) == []
    assert one(run(files, {"accepted_values": {"column": "f", "values": [0.5]}})).examples \
        == [{"id": 1, "f": 0.2}]


# --- row_count -------------------------------------------------------------------------


def test_row_count(write: Any) -> None:
    files = [write({"id": [1, 2]}), write({"id": [3]})]
    assert run(files, {"row_count": {"min": 3, "max": 3}}) == []
    low = one(run(files, {"row_count": {"min": 4}}))
    assert (low.check, low.column, low.failing_rows, low.examples) == ("row_count", None, 0, [])
    assert low.message.startswith(
        "shop.orders: check row_count failed: the version has 3 rows, fewer than the minimum 4")
    assert "more than the maximum 2" in one(run(files, {"row_count": {"max": 2}})).message


# --- freshness -------------------------------------------------------------------------


def test_freshness_on_timezone_aware_timestamps(write: Any) -> None:
    auckland = timezone(timedelta(hours=13))
    newest = datetime(2026, 3, 2, 0, 30, tzinfo=auckland)  # 11:30 UTC, 30 minutes before NOW
    files = [write({"id": [1, 2], "at": pa.array([newest - timedelta(days=3), newest],
                                                  pa.timestamp("us", "Pacific/Auckland"))})]
    assert run(files, {"freshness": {"column": "at", "max_age": "30m"}}) == []
    failure = one(run(files, {"freshness": {"column": "at", "max_age": "29m"}}))
    assert (failure.check, failure.column, failure.failing_rows) == ("freshness", "at", 0)
    assert failure.message == (
        "shop.orders: check freshness(at) failed: the newest at is 2026-03-01T11:30:00+00:00, "
        "30m old at 2026-03-01T12:00:00+00:00, more than max_age 29m; check that the source "
        "is still being updated, or raise max_age")


def test_freshness_on_naive_timestamps_and_dates(write: Any) -> None:
    files = [write({"id": [1], "at": [datetime(2026, 2, 27, 12)], "day": [date(2026, 2, 28)]})]
    assert run(files, {"freshness": {"column": "at", "max_age": "2d"}}) == []
    assert "2d old" in one(run(files, {"freshness": {"column": "at", "max_age": "1d"}})).message
    # Yesterday's date counts until midnight: 12 hours old at noon today.
    assert run(files, {"freshness": {"column": "day", "max_age": "12h"}}) == []
    failure = one(run(files, {"freshness": {"column": "day", "max_age": "11h"}}))
    assert "the newest day is 2026-02-28, 12h old" in failure.message
    # A naive ``now`` is UTC.
    assert run_checks("s.d", checks({"freshness": {"column": "at", "max_age": "1h"}}), [],
                      files, now=datetime(2026, 2, 27, 12, 30)) == []


def test_freshness_fails_without_values(write: Any) -> None:
    files = [write({"id": pa.array([1, 2], pa.int64()),
                    "at": pa.array([None, None], pa.timestamp("us", "UTC"))})]
    failure = one(run(files, {"freshness": {"column": "at", "max_age": "1d"}}))
    assert "at is empty in all 2 rows" in failure.message
    empty = [write(pa.table({"at": pa.array([], pa.timestamp("us", "UTC"))}))]
    assert "has no rows" in one(run(empty, {"freshness": {"column": "at", "max_age": "1d"}},
                                    key=())).message


def test_freshness_needs_a_time_column(write: Any) -> None:
    files = [write({"id": [1], "name": ["a"]})]
    failure = one(run(files, {"freshness": {"column": "name", "max_age": "1d"}}))
    assert "column name is VARCHAR; freshness needs a timestamp" in failure.message


# --- whole versions --------------------------------------------------------------------


def test_an_empty_version_passes_row_checks_only() -> None:
    failures = run([], {"not_null": ["id"]}, {"unique": ["id"]}, {"row_count": {"min": 1}},
                   {"accepted_values": {"column": "c", "values": ["a"]}},
                   {"range": {"column": "n", "min": 0}},
                   {"freshness": {"column": "at", "max_age": "1d"}})
    assert [f.check for f in failures] == ["row_count", "freshness"]
    assert "the version has 0 rows, fewer than the minimum 1" in failures[0].message
    assert run([], {"row_count": {"max": 0}}) == []


def test_a_column_missing_from_the_data_fails_the_check(write: Any) -> None:
    failure = one(run([write({"id": [1]})], {"not_null": ["email"]}))
    assert (failure.check, failure.column, failure.failing_rows) == ("not_null", "email", 0)
    assert "column email is not in the data (its columns: id)" in failure.message


def test_column_names_keep_their_case(write: Any) -> None:
    files = [write({"OrderId": [1, 1, 2], "Status": ["ok", "bad", "ok"]})]
    failures = run(files, {"unique": ["OrderId"]},
                   {"accepted_values": {"column": "Status", "values": ["ok"]}}, key=("OrderId",))
    assert [f.examples for f in failures] == [[{"OrderId": 1}], [{"OrderId": 1, "Status": "bad"}]]


def test_older_files_without_a_new_column_read_it_as_null(write: Any) -> None:
    files = [write({"id": [1, 2]}), write({"id": [3], "note": ["x"]})]
    failure = one(run(files, {"not_null": ["note"]}))
    assert failure.examples == [{"id": 1}, {"id": 2}]


def test_examples_are_json_friendly(write: Any) -> None:
    at = datetime(2026, 1, 1, 8, tzinfo=UTC)
    files = [write({"at": pa.array([at, at], pa.timestamp("us", "UTC")),
                    "ref": pa.array([Decimal("1.5")] * 2, pa.decimal128(4, 1)),
                    "day": [date(2026, 1, 1)] * 2, "v": [None, None]})]
    failure = one(run(files, {"not_null": ["v"]}, key=("at", "ref", "day")))
    assert failure.examples[0] == {"at": "2026-01-01T08:00:00+00:00", "ref": "1.5",
                                   "day": "2026-01-01"}
    json.dumps(failure.examples)
    dup = one(run(files, {"unique": ["at", "ref"]}, key=("at", "ref")))
    assert dup.examples == [{"at": "2026-01-01T08:00:00+00:00", "ref": "1.5"}]


def test_enforce_checks_raises_with_every_failure(write: Any) -> None:
    files = [write({"id": [1, 1, None]})]
    enforce_checks("shop.orders", checks({"row_count": {"min": 1}}), ["id"], files)
    with pytest.raises(QualityError) as raised:
        enforce_checks("shop.orders", checks({"not_null": ["id"]}, {"unique": ["id"]}),
                       ["id"], files)
    assert isinstance(raised.value, StoreError)
    assert [f.check for f in raised.value.failures] == ["not_null", "unique"]
    assert str(raised.value).splitlines() == [f.message for f in raised.value.failures]


def test_unreadable_files_are_a_store_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(StoreError, match="cannot read the version's Parquet files"):
        run([str(bad)], {"not_null": ["id"]})


def test_a_given_connection_is_used_and_left_open(write: Any) -> None:
    db = duckdb.connect()
    assert run([write({"id": [1, 2]})], {"unique": ["id"]}, connection=db) == []
    assert db.execute("select 42").fetchone() == (42,)
    db.close()


def test_a_large_version_is_checked_within_a_small_memory_limit(tmp_path: Path) -> None:
    rows, per_file = 2_000_000, 500_000
    files = []
    for start in range(0, rows, per_file):
        path = tmp_path / f"big-{start}.parquet"
        ids = pa.array(range(start, start + per_file), pa.int64())
        with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("name", pa.string()),
                                               ("amount", pa.float64())])) as writer:
            for chunk in range(0, per_file, 100_000):
                part = ids.slice(chunk, 100_000)
                writer.write_table(pa.table({
                    "id": part,
                    "name": pc.cast(part, pa.string()),
                    "amount": pc.cast(part, pa.float64()),
                }))
        files.append(str(path))
    db = duckdb.connect(config={"memory_limit": "64MB", "temp_directory": str(tmp_path / "spill"),
                                "threads": 2})
    failures = run(files, {"not_null": ["id", "name"]}, {"unique": ["id"]},
                   {"unique": ["name"]}, {"range": {"column": "amount", "min": 0, "max": 1e6}},
                   {"row_count": {"min": rows, "max": rows}}, connection=db)
    db.close()
    failure = one(failures)
    assert failure.check == "range"
    assert failure.failing_rows == rows - 1_000_001
    assert failure.examples == [{"id": 1_000_001, "amount": 1_000_001.0},
                                {"id": 1_000_002, "amount": 1_000_002.0},
                                {"id": 1_000_003, "amount": 1_000_003.0}]
