"""Quality checks: a new version is published only if its data passes its dataset's checks.

The checks run over *all* rows of the version (for an append or a merge: the old rows plus
the change), read by DuckDB straight from the version's Parquet files. Each check is one
SQL query that reads only the columns it needs; counts and up to three examples come from
the same scan, and aggregates spill to disk, so tables larger than memory are checked with
bounded memory.

What each check means (the model's ``checks:``):

``not_null: [a, b]``
    each listed column has a value in every row (one failure per column).
``unique: [a, b]``
    no two rows share the combination. Rows with a null in any of the columns are never
    duplicates (as in a SQL ``UNIQUE`` constraint): ``not_null`` catches those.
``accepted_values: {column, values}``
    every non-null value is in the list; a string column is compared as text (``1`` in
    the list accepts ``"1"``), any other column with the values in its own type.
``range: {column, min, max}``
    every non-null value is within ``min`` and ``max`` (both inclusive). Bounds are numbers
    for numeric columns and ISO dates or timestamps for date and timestamp columns; a
    timestamp without an offset is taken as UTC.
``row_count: {min, max}``
    the version's total number of rows is within the bounds.
``freshness: {column, max_age}``
    the newest value of a timestamp, timestamp_tz or date column is at most ``max_age``
    old; a naive timestamp is taken as UTC and a date counts until the end of that day
    (UTC). An empty version, or one where the column is always null, is not fresh.

A failure names the dataset, the check and column, how many rows fail and up to three
offending rows by their primary key (or, without a key, by their 1-based row number in the
version, counting through its files in order). Those examples hold row values, so each
failure also has a ``public`` text without them (dataset, check, column, counts), which
is what a run's public error says; the examples stay with the run's detail. A check that
cannot run (its column is not in the data, a bound does not fit the column's type) fails
too: nothing unchecked is published.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb

from dataferry.errors import StoreError
from dataferry.model.spec import (
    AcceptedValuesCheck,
    AnyCheck,
    FreshnessCheck,
    NotNullCheck,
    RangeCheck,
    RowCountCheck,
    UniqueCheck,
    duration_seconds,
)
from dataferry.store.duck import MEMORY_LIMIT, ident
from dataferry.store.files import json_value
from dataferry.store.scan import FileScan, relation

__all__ = ["MEMORY_LIMIT", "CheckFailure", "QualityError", "enforce_checks", "run_checks"]


EXAMPLES = 3
_ROW = "row"  # the example key when a dataset has no primary key
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT", "UHUGEINT"}
_FLOATS = {"FLOAT", "DOUBLE"}
_TEXT = {"VARCHAR", "JSON"}


@dataclass(frozen=True)
class CheckFailure:
    """One failed check of one version.

    ``failing_rows`` counts the offending rows; for ``unique`` it counts the duplicated
    keys, and for the table-wide ``row_count`` and ``freshness`` (and a check that could
    not run) it is 0. ``examples`` are JSON-friendly. ``message`` may hold row values (the
    examples, the newest value); ``public`` never does: it is built from the dataset,
    the check, its column and counts only.
    """

    check: str
    column: str | None
    message: str
    failing_rows: int
    examples: list[dict[str, Any]]
    public: str = ""
    dataset: str = ""


class QualityError(StoreError):
    """A version failed its quality checks; ``failures`` has each, ``str()`` one per line."""

    def __init__(self, failures: Sequence[CheckFailure]) -> None:
        self.failures = list(failures)
        super().__init__("\n".join(f.message for f in self.failures),
                         public="\n".join(f.public or f"check {f.check} failed"
                                          for f in self.failures))


def run_checks(
    dataset: str,
    checks: Sequence[AnyCheck],
    primary_key: Sequence[str],
    files: Sequence[str | Path | FileScan],
    *,
    now: datetime | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
    partitioned: bool = False,
) -> list[CheckFailure]:
    """Run ``checks`` over the rows in ``files`` (all Parquet files of one version).

    Returns the failures in the order of the checks, empty if all pass. ``now`` (default:
    the current time; naive means UTC) is what ``freshness`` measures against. Without a
    ``connection`` a private one is opened with a memory limit of ``MEMORY_LIMIT`` and a
    temporary spill directory; a given connection is used as it is and left open.
    Raises ``StoreError`` if the files cannot be read. ``partitioned``: the files are in
    hive-style ``column=value/`` folders whose values are columns too. ``FileScan``s
    carry the rows a file's deletion vector removes.
    """
    if not checks:
        return []
    moment = _utc(now or datetime.now(UTC))
    with _connection(connection) as db:
        version = _Version(dataset, list(files), primary_key, db, partitioned)
        failures: list[CheckFailure] = []
        for check in checks:
            failures.extend(version.run(check, moment))
        return failures


def enforce_checks(
    dataset: str,
    checks: Sequence[AnyCheck],
    primary_key: Sequence[str],
    files: Sequence[str | Path | FileScan],
    *,
    now: datetime | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
    partitioned: bool = False,
) -> None:
    """Like ``run_checks``, but raise ``QualityError`` listing every failure, if any."""
    failures = run_checks(dataset, checks, primary_key, files, now=now, connection=connection,
                          partitioned=partitioned)
    if failures:
        raise QualityError(failures)


@contextmanager
def _connection(given: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="ferry-quality-") as spill:
        db = duckdb.connect(config={
            "memory_limit": MEMORY_LIMIT,
            "temp_directory": spill,
            "preserve_insertion_order": False,  # row numbers come from file_row_number
        })
        db.execute("set enable_progress_bar = false")  # stdout belongs to the command
        try:
            yield db
        finally:
            db.close()


class _CannotRun(Exception):
    """The check does not fit the data (a missing column, a bound of the wrong type)."""


def _is_tz(kind: str) -> bool:
    """TIMESTAMP WITH TIME ZONE or TIMESTAMPTZ_NS: DuckDB's types of timestamp_tz columns."""
    return kind.startswith("TIMESTAMPTZ") or kind.startswith("TIMESTAMP WITH TIME ZONE")


def _is_time(kind: str) -> bool:
    """A type freshness and ISO range bounds work on: dates and timestamps of any unit."""
    return kind == "DATE" or kind.startswith("TIMESTAMP")


def _label(kind: str, columns: Sequence[str] = ()) -> str:
    return f"{kind}({', '.join(columns)})" if columns else kind


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _have(n: int) -> str:
    return "has" if n == 1 else "have"


def _shown(value: Any) -> str:
    return json.dumps(json_value(value), ensure_ascii=False, default=str)


def _examples_text(examples: list[dict[str, Any]]) -> str:
    if not examples:
        return ""
    return ", e.g. " + ", ".join(json.dumps(e, ensure_ascii=False, default=str) for e in examples)


class _Version:
    """The rows of one version as DuckDB reads them, and the checks over them."""

    def __init__(self, dataset: str, files: list[str | Path | FileScan],
                 primary_key: Sequence[str], db: duckdb.DuckDBPyConnection,
                 partitioned: bool = False) -> None:
        self.dataset = dataset
        self.db = db
        scans = [f if isinstance(f, FileScan) else FileScan(str(f)) for f in files]
        self.files = [s.path for s in scans]
        self.numbered = all(s.deleted is None and s.only is None for s in scans)
        """Rows can be named by file and position (no deletion vector hides any)."""
        hive = ", hive_partitioning = true" if partitioned else ""
        self.source = f"read_parquet($files, union_by_name = true{hive})"
        if not self.numbered:
            self.source = relation(db, scans, hive=partitioned) or self.source
        self.types: dict[str, str] = {}
        self.total = 0
        self._offsets: list[int] | None = None
        if files:
            try:
                described = db.execute(f"describe select * from {self.source}",
                                       self.params).fetchall()
                self.types = {str(row[0]): str(row[1]) for row in described}
                counted = db.execute(f"select count(*) from {self.source}", self.params)
                self.total = int(counted.fetchone()[0])  # type: ignore[index]
            except duckdb.Error as error:
                raise StoreError(f"{dataset}: cannot read the version's Parquet files to run "
                                 f"its quality checks: {error}",
                                 public=f"{dataset}: cannot read the version's Parquet files "
                                        f"to run its quality checks ({type(error).__name__})"
                                 ) from error
        resolved = [self.find(k) for k in primary_key]
        # Without every key column in the data, rows are named by number instead.
        self.key = [k for k in resolved if k is not None] if all(resolved) else []

    # --- reading ---------------------------------------------------------------------

    def find(self, column: str) -> str | None:
        """The data's spelling of ``column`` (DuckDB names are case-insensitive)."""
        if column in self.types:
            return column
        folded = [name for name in self.types if name.casefold() == column.casefold()]
        return folded[0] if folded else None

    def column(self, column: str) -> str:
        found = self.find(column)
        if found is None:
            listed = ", ".join(self.types) or "none"
            raise _CannotRun(f"column {column} is not in the data (its columns: {listed})")
        return found

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
        row = self.db.execute(sql.replace("{source}", self.source),
                              {**self.params, **(params or {})}).fetchone()
        assert row is not None  # an aggregate always has one row
        return tuple(row)

    @property
    def params(self) -> dict[str, Any]:
        """The query parameters ``source`` needs."""
        return {"files": self.files} if self.numbered else {}

    def offsets(self) -> list[int]:
        """Rows before each file, for numbering rows through the whole version."""
        if self._offsets is None:
            counts = dict(self.db.execute(
                f"select file_index, count(*) from {self.source} group by all",
                {"files": self.files}).fetchall())
            self._offsets, before = [], 0
            for index in range(len(self.files)):
                self._offsets.append(before)
                before += int(counts.get(index, 0))
        return self._offsets

    def value_sql(self, name: str) -> str:
        # TIMESTAMPTZ values would need pytz to reach Python: fetch them as UTC epochs.
        kind = self.types.get(name, "")
        if _is_tz(kind):
            return f"epoch_us(cast({ident(name)} as TIMESTAMPTZ))"
        if kind == "FLOAT":  # as it was written (0.2), not as a double (0.200000003)
            return f"cast(cast({ident(name)} as VARCHAR) as DOUBLE)"
        return ident(name)

    def example_sql(self, value: str | None = None, *, by_row: bool = False) -> str:
        """An orderable struct naming a row: its key (or number), plus ``value``'s value."""
        if self.key and not by_row:
            fields = [(k, self.value_sql(k)) for k in self.key]
        elif not self.numbered:  # positions in files say nothing once rows are deleted
            fields = [(_ROW, "null")]
        else:
            before = "$offsets[file_index::BIGINT + 1] + " if len(self.files) > 1 else ""
            fields = [(_ROW, f"{before}file_row_number + 1")]
        if value is not None and value not in {name for name, _ in fields}:
            fields.append((value, self.value_sql(value)))
        return "struct_pack(" + ", ".join(f"{ident(n)} := {e}" for n, e in fields) + ")"

    def example_params(self, by_row: bool = False) -> dict[str, Any]:
        if (self.key and not by_row) or len(self.files) <= 1 or not self.numbered:
            return {}
        return {"offsets": self.offsets()}

    def examples(self, found: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{k: self.json(k, v) for k, v in row.items()} for row in found or []]

    def json(self, name: str, value: Any) -> Any:
        if _is_tz(self.types.get(name, "")) and isinstance(value, int):
            return (_EPOCH + timedelta(microseconds=value)).isoformat()
        return json_value(value)

    def failure(self, kind: str, column: str | None, label: str, text: str, failing: int,
                examples: list[dict[str, Any]] | None = None, *,
                public: str | None = None) -> CheckFailure:
        """A failure; ``public`` (default: the failing row count) is its value-free text."""
        message = f"{self.dataset}: check {label} failed: {text}"
        summary = f"{self.dataset}: check {label} failed: {public or _rows(failing)}"
        return CheckFailure(kind, column, message, failing, examples or [], summary,
                            self.dataset)

    # --- checks ----------------------------------------------------------------------

    def run(self, check: AnyCheck, now: datetime) -> list[CheckFailure]:
        kind, columns = _describe(check)
        label = _label(kind, columns)
        try:
            if isinstance(check, NotNullCheck):
                return self.not_null(check)
            if isinstance(check, UniqueCheck):
                return self.unique(check, label)
            if isinstance(check, AcceptedValuesCheck):
                return self.accepted_values(check, label)
            if isinstance(check, RangeCheck):
                return self.range(check, label)
            if isinstance(check, RowCountCheck):
                return self.row_count(check, label)
            return self.freshness(check, label, now)
        except (_CannotRun, duckdb.BinderException, duckdb.ConversionException) as error:
            # The check does not fit the data (a DuckDB binder or conversion error says how).
            reason = str(error).splitlines()[0]
            message = (f"{self.dataset}: check {label} cannot run: {reason}; fix the check "
                       "in the model or the data")
            # A conversion error can quote a value of the data: the public text does not.
            public = (f"{self.dataset}: check {label} cannot run ({type(error).__name__}); "
                      "fix the check in the model or the data")
            return [CheckFailure(kind, columns[0] if len(columns) == 1 else None, message, 0,
                                 [], public, self.dataset)]
        except duckdb.Error as error:
            raise StoreError(f"{self.dataset}: check {label} could not run: {error}",
                             public=f"{self.dataset}: check {label} could not run "
                                    f"({type(error).__name__})") from error

    def not_null(self, check: NotNullCheck) -> list[CheckFailure]:
        if not self.files:
            return []
        names = [self.column(c) for c in check.not_null]
        parts: list[str] = []
        params: dict[str, Any] = {}
        for name in names:
            by_row = name in self.key
            condition = f"{ident(name)} is null"
            parts.append(f"count(*) filter (where {condition}), "
                         f"min({self.example_sql(by_row=by_row)}, {EXAMPLES}) "
                         f"filter (where {condition})")
            params.update(self.example_params(by_row))
        row = self.query(f"select {', '.join(parts)} from {{source}}", params)
        failures = []
        for i, (column, name) in enumerate(zip(check.not_null, names, strict=True)):
            count, found = int(row[2 * i]), row[2 * i + 1]
            if count:
                examples = self.examples(found)
                failures.append(self.failure(
                    "not_null", column, _label("not_null", [column]),
                    f"{count} of {_rows(self.total)} {_have(count)} no {name}"
                    f"{_examples_text(examples)}; fill in {name} at the source, or remove it "
                    "from not_null if it may be empty", count, examples,
                    public=f"{count} of {_rows(self.total)} {_have(count)} no {name}"))
        return failures

    def unique(self, check: UniqueCheck, label: str) -> list[CheckFailure]:
        if not self.files:
            return []
        names = [self.column(c) for c in check.unique]
        listed = ", ".join(ident(n) for n in names)
        present = " and ".join(f"{ident(n)} is not null" for n in names)
        example = "struct_pack(" + ", ".join(
            f"{ident(n)} := {self.value_sql(n)}" for n in names) + ")"
        groups, rows, found = self.query(
            f"""select count(*), coalesce(sum(ferry_rows), 0), min({example}, {EXAMPLES})
            from (select {listed}, count(*) as ferry_rows from {{source}} where {present}
                  group by all having count(*) > 1)""")
        if not groups:
            return []
        groups, examples = int(groups), self.examples(found)
        is_key = [n.casefold() for n in names] == [k.casefold() for k in self.key]
        fix = "the primary key" if is_key else "the unique check"
        noun = "duplicate key" if groups == 1 else "duplicate keys"
        return [self.failure(
            "unique", check.unique[0] if len(names) == 1 else None, label,
            f"{groups} {noun} ({_rows(int(rows))}){_examples_text(examples)}; fix the source "
            f"data or {fix}", groups, examples, public=f"{groups} {noun} ({_rows(int(rows))})")]

    def accepted_values(self, check: AcceptedValuesCheck, label: str) -> list[CheckFailure]:
        spec = check.accepted_values
        if not self.files:
            return []
        name = self.column(spec.column)
        kind = self.types[name]
        params: dict[str, Any] = {}
        items = []
        for i, value in enumerate(spec.values):
            if isinstance(value, str) and kind not in _TEXT:
                _check_cast(self.db, value, kind, name)
            params[f"v{i}"] = _accepted(value, kind)
            items.append(_accepted_sql(f"$v{i}", value, kind))
        condition = f"{ident(name)} is not null and {ident(name)} not in ({', '.join(items)})"
        params.update(self.example_params())
        count, found = self.query(
            f"select count(*) filter (where {condition}), "
            f"min({self.example_sql(name)}, {EXAMPLES}) filter (where {condition}) "
            "from {source}", params)
        if not count:
            return []
        count, examples = int(count), self.examples(found)
        shown = ", ".join(_shown(v) for v in spec.values[:10])
        more = ", ..." if len(spec.values) > 10 else ""
        return [self.failure(
            "accepted_values", spec.column, label,
            f"{count} of {_rows(self.total)} {_have(count)} {name} not in [{shown}{more}]"
            f"{_examples_text(examples)}; fix the source data or add the values to "
            "accepted_values", count, examples,
            public=f"{count} of {_rows(self.total)} {_have(count)} {name} not in the "
                   "accepted values")]

    def range(self, check: RangeCheck, label: str) -> list[CheckFailure]:
        spec = check.range
        if not self.files:
            return []
        name = self.column(spec.column)
        kind = self.types[name]
        outside: list[str] = []
        params: dict[str, Any] = {}
        if spec.min is not None:
            sql, params["lo"] = _bound(spec.min, kind, name, "lo")
            outside.append(f"{ident(name)} < {sql}")
        if spec.max is not None:
            sql, params["hi"] = _bound(spec.max, kind, name, "hi")
            outside.append(f"{ident(name)} > {sql}")
        condition = f"{ident(name)} is not null and ({' or '.join(outside)})"
        params.update(self.example_params())
        count, found = self.query(
            f"select count(*) filter (where {condition}), "
            f"min({self.example_sql(name)}, {EXAMPLES}) filter (where {condition}) "
            "from {source}", params)
        if not count:
            return []
        if spec.min is not None and spec.max is not None:
            where = f"outside {spec.min}..{spec.max}"
        elif spec.min is not None:
            where = f"below {spec.min}"
        else:
            where = f"above {spec.max}"
        count, examples = int(count), self.examples(found)
        return [self.failure(
            "range", spec.column, label,
            f"{count} of {_rows(self.total)} {_have(count)} {name} {where}"
            f"{_examples_text(examples)}; fix the source data or widen the range",
            count, examples, public=f"{count} of {_rows(self.total)} {_have(count)} {name} {where}")]

    def row_count(self, check: RowCountCheck, label: str) -> list[CheckFailure]:
        spec, total = check.row_count, self.total
        if spec.min is not None and total < spec.min:
            text = (f"the version has {_rows(total)}, fewer than the minimum {spec.min}; check "
                    "that the source returned all its rows, or lower row_count min")
        elif spec.max is not None and total > spec.max:
            text = (f"the version has {_rows(total)}, more than the maximum {spec.max}; check "
                    "the source for duplicated or unexpected rows, or raise row_count max")
        else:
            return []
        return [self.failure("row_count", None, label, text, 0, public=text.partition(";")[0])]

    def freshness(self, check: FreshnessCheck, label: str, now: datetime) -> list[CheckFailure]:
        spec = check.freshness
        max_age = timedelta(seconds=duration_seconds(spec.max_age))
        hint = "check that the source is still being updated, or raise max_age"
        if not self.files or not self.total:
            return [self.failure("freshness", spec.column, label,
                                 f"the version has no rows, so nothing is newer than "
                                 f"{spec.max_age}; {hint}", 0, public="the version has no rows")]
        name = self.column(spec.column)
        kind = self.types[name]
        if not _is_time(kind):
            raise _CannotRun(f"column {name} is {kind}; freshness needs a timestamp, "
                             "timestamp_tz or date column")
        newest_sql = f"max({ident(name)})"
        if kind != "DATE":  # any unit, with or without zone, as microseconds since 1970 UTC
            newest_sql = f"cast({newest_sql} as {'TIMESTAMPTZ' if _is_tz(kind) else 'TIMESTAMP'})"
        present, newest_us = self.query(
            f"select count({ident(name)}), epoch_us({newest_sql}) from {{source}}")
        if not present:
            return [self.failure("freshness", spec.column, label,
                                 f"{name} is empty in all {_rows(self.total)}, so nothing is "
                                 f"newer than {spec.max_age}; {hint}", 0,
                                 public=f"{name} is empty in all {_rows(self.total)}")]
        newest = _EPOCH + timedelta(microseconds=int(newest_us))
        shown = newest.date().isoformat() if kind == "DATE" else newest.isoformat()
        if kind == "DATE":
            newest += timedelta(days=1)  # a date is current until its day ends
        age = now - newest
        if age <= max_age:
            return []
        return [self.failure(
            "freshness", spec.column, label,
            f"the newest {name} is {shown}, {_age(age)} old at {now.astimezone(UTC).isoformat()}"
            f", more than max_age {spec.max_age}; {hint}", 0,
            public=f"the newest {name} is more than max_age {spec.max_age} old")]


def _describe(check: AnyCheck) -> tuple[str, list[str]]:
    """The check's kind and the columns it names (for its label)."""
    if isinstance(check, NotNullCheck):
        return "not_null", list(check.not_null)
    if isinstance(check, UniqueCheck):
        return "unique", list(check.unique)
    if isinstance(check, AcceptedValuesCheck):
        return "accepted_values", [check.accepted_values.column]
    if isinstance(check, RangeCheck):
        return "range", [check.range.column]
    if isinstance(check, RowCountCheck):
        return "row_count", []
    return "freshness", [check.freshness.column]


def _accepted(value: str | int | float | bool, kind: str) -> Any:
    """An accepted value as the parameter it is compared as."""
    if kind in _TEXT:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    if isinstance(value, float) and kind not in _FLOATS:
        return Decimal(str(value))  # exact against integers and decimals
    if isinstance(value, str) and _is_tz(kind):
        try:  # with an explicit offset, so DuckDB's session time zone plays no part
            return _utc(datetime.fromisoformat(value)).isoformat()
        except ValueError:
            pass  # _check_cast reports it
    return value


def _utc(moment: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken as UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _accepted_sql(param: str, value: str | int | float | bool, kind: str) -> str:
    if kind in _TEXT or isinstance(value, bool):
        return param
    if isinstance(value, str) or kind in _FLOATS:
        # A float column compares with values rounded as it stores them (0.1 as FLOAT).
        return f"cast({param} as {kind})"
    return param


def _check_cast(db: duckdb.DuckDBPyConnection, value: str, kind: str, name: str) -> None:
    try:
        # Only whether it casts: a timestamp_tz value cannot reach Python without pytz.
        db.execute(f"select cast($v as {kind}) is null", {"v": value}).fetchone()
    except duckdb.Error as error:
        raise _CannotRun(f"accepted value {value!r} is not a valid {kind} for column "
                         f"{name}") from error


def _bound(bound: str | int | float, kind: str, name: str, role: str) -> tuple[str, Any]:
    """SQL comparing against a range bound, and the bound as its parameter."""
    param = f"${role}"
    wrong = _CannotRun(f"range bound {bound!r} does not fit column {name} of type {kind}")
    if kind in _INTEGERS or kind in _FLOATS or kind.startswith("DECIMAL"):
        try:
            number = Decimal(str(bound)) if isinstance(bound, str) else bound
        except InvalidOperation:
            raise wrong from None
        if kind in _FLOATS:
            return param, float(number)
        return param, number if isinstance(number, Decimal) else Decimal(str(number))
    if kind == "VARCHAR":
        if not isinstance(bound, str):
            raise wrong
        return param, bound
    if not isinstance(bound, str):
        raise wrong
    if kind == "TIME":
        try:
            return f"cast({param} as TIME)", time.fromisoformat(bound).isoformat()
        except ValueError:
            raise wrong from None
    if not _is_time(kind):
        raise wrong
    try:
        day: date = date.fromisoformat(bound)
        moment = datetime.combine(day, time(), UTC)
        only_day = True
    except ValueError:
        try:
            moment = datetime.fromisoformat(bound)
        except ValueError:
            raise wrong from None
        only_day = False
    moment = _utc(moment)
    if kind == "DATE" and only_day:
        return f"cast({param} as DATE)", moment.date().isoformat()
    if _is_tz(kind):  # in the column's own unit: TIMESTAMPTZ_NS compares with nothing else
        return f"cast({param} as {kind})", moment.isoformat()
    return f"cast({param} as TIMESTAMP)", moment.replace(tzinfo=None).isoformat()


def _age(age: timedelta) -> str:
    """``3d 2h``, ``45m``, ``30s``: the two largest units of a duration."""
    seconds = int(age.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])
