"""A failed run's public summary holds no row values, by construction (broker.failure)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pytest

from dataferry.broker.failure import describe_failure
from dataferry.connectors.duckdb.source import duckdb_error
from dataferry.connectors.mysql.connection import classify as mysql_classify
from dataferry.connectors.sqlite.source import sqlite_error
from dataferry.errors import SinkError, SourceError
from dataferry.model.spec import (
    AcceptedValuesCheck,
    Column,
    MysqlSink,
    NotNullCheck,
    UniqueCheck,
)
from dataferry.store.conform import Conformer, SchemaError
from dataferry.store.quality import QualityError, enforce_checks

pytestmark = pytest.mark.security

SECRET = "leaky-value-5521"


class DriverError(Exception):
    """What psycopg and ADBC raise: a message quoting the row, and a SQLSTATE."""

    sqlstate = "23505"


def test_an_error_that_may_quote_rows_is_summarised_without_its_message() -> None:
    try:
        try:
            raise DriverError(f"Key (id)=({SECRET}) already exists")
        except DriverError as driver:
            raise SinkError(f"sink x: {driver}") from None
    except SinkError as error:
        failure = describe_failure("deliver:crm.app:people", error)
    assert SECRET not in failure.public
    assert failure.public.startswith("deliver:crm.app:people: writing to the sink failed "
                                     "(SinkError, SQLSTATE 23505)")
    assert failure.detail is not None and SECRET in failure.detail


def test_an_error_with_a_public_text_is_shown_as_it_is() -> None:
    failure = describe_failure("ingest:shop.orders", SourceError("table gone", public=True))
    assert (failure.public, failure.detail) == ("table gone", None)


def test_an_internal_error_names_its_class_only() -> None:
    try:
        raise ValueError(f"cannot compare {SECRET!r}")
    except ValueError as error:
        failure = describe_failure("transform:shop.totals", error)
    assert SECRET not in failure.public and "internal error (ValueError)" in failure.public
    assert failure.detail is not None and SECRET in failure.detail
    assert "test_failure.py" in failure.detail  # where it happened, for the owners


def test_a_failed_check_keeps_its_examples_as_data(tmp_path: Path) -> None:
    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"id": [660417, 660417, 8], "email": [SECRET, "ok", None]}), path)
    checks = [NotNullCheck(not_null=["email"]), UniqueCheck(unique=["id"]),
              AcceptedValuesCheck.model_validate(
                  {"accepted_values": {"column": "email", "values": ["ok"]}})]
    with pytest.raises(QualityError) as raised:
        enforce_checks("shop.people", checks, ["id"], [path])
    assert SECRET in str(raised.value) and "660417" in str(raised.value)  # for the owners
    failure = describe_failure("ingest:shop.people", raised.value)
    assert failure.public.splitlines() == [
        "shop.people: check not_null(email) failed: 1 of 3 rows has no email",
        "shop.people: check unique(id) failed: 1 duplicate key (2 rows)",
        "shop.people: check accepted_values(email) failed: 1 of 3 rows has email not in the "
        "accepted values"]
    assert [(c.dataset, c.check, c.column, c.failing_rows, c.examples)
            for c in failure.checks] == [
        ("shop.people", "not_null", "email", 1, [{"id": 8}]),
        ("shop.people", "unique", "id", 1, [{"id": 660417}]),
        ("shop.people", "accepted_values", "email", 1, [{"id": 660417, "email": SECRET}])]


def test_a_value_that_does_not_fit_its_type_is_named_in_the_detail_only() -> None:
    conformer = Conformer("shop.pay", {"id": Column(type="int64", nullable=False),
                                       "amount": Column(type="int64")}, ["id"])
    batch = pa.record_batch({"id": [1, 99321], "amount": ["5", SECRET]})
    with pytest.raises(SchemaError) as raised:
        conformer.conform(batch)
    failure = describe_failure("ingest:shop.pay", raised.value)
    assert SECRET in str(raised.value) and "99321" in str(raised.value)
    assert SECRET not in failure.public and "99321" not in failure.public
    assert failure.public.startswith("shop.pay: column 'amount' at row 1: a value is not")


def test_database_errors_say_their_code_not_the_row() -> None:
    """The sinks' and sources' driver errors: SQLite, DuckDB and MariaDB quote rows too."""
    sqlite = sqlite3.connect(":memory:")
    sqlite.execute("create table t (id integer primary key, email text unique)")
    sqlite.execute("insert into t values (1, ?)", (SECRET,))
    with pytest.raises(sqlite3.IntegrityError) as raised:
        sqlite.execute("insert into t values (2, ?)", (SECRET,))
    found = sqlite_error(raised.value, "sink crm.app", SinkError)
    assert found.public == "sink crm.app: SQLITE_CONSTRAINT_UNIQUE"
    duck = duckdb.connect()
    with pytest.raises(duckdb.Error) as failed:
        duck.execute(f"select cast('{SECRET}' as integer)")
    assert duckdb_error(failed.value, "sink crm.lake", SinkError).public == (
        "sink crm.lake: ConversionException")
    spec = MysqlSink(kind="mysql", dsn="mysql://app@127.0.0.1:3306/crm")
    duplicate = pymysql.err.IntegrityError(1062, f"Duplicate entry '{SECRET}' for key 'email'")
    mysql = mysql_classify(duplicate, spec, "sink crm.app", None, "delivering into")
    assert SECRET in str(mysql) and mysql.public is not None and SECRET not in mysql.public
    assert mysql.public.endswith("IntegrityError (error 1062)")
