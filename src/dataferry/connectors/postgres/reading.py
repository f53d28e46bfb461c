"""How the source reads each column: the SELECT expression, the Arrow type it produces and
the check or conversion applied to each batch (the mapping is documented in ``types.py``).

ADBC decodes binary COPY natively for the common types; everything it would hand over in
a form that is not exact or not usable (numeric as opaque text, time with time zone,
inet, ranges...) is cast in the SQL to something it decodes exactly. Its decoding
wraps ``infinity`` dates and timestamps around silently, so those are checked here.

An array of integers, floats or text is selected as ``array_send(col)`` and decoded by
``arrays`` (numpy over the whole batch): ADBC's element-by-element decoding cost the client
as much as the rest of the read, and the array's header says its dimensions, so no
``array_ndims`` column is selected beside it. Arrays of other element types are ADBC's.

An interval is selected as ``interval_send(col)`` and printed by ``interval_text`` as
PostgreSQL prints it with ``intervalstyle iso_8601`` (the text the store keeps): the
server's own printing cost it twice the CPU of sending the value, and ADBC's
month_day_nano decoding refuses a whole read for a time part past 2^63 nanoseconds.

A numeric is selected as ``::text`` (and, with a precision, parsed into a decimal by Arrow):
the server prints it about as fast as it sends it in binary, while ADBC's own decoding of
binary numerics to text costs more than all the other columns together (at 1M rows of
8 columns: 0.62 s against 0.43 s for the whole read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.postgres import arrays, interval_text
from dataferry.connectors.postgres.connection import ident
from dataferry.model.types import METADATA_KEY

Fix = Callable[[pa.Array], pa.Array]

# Type OIDs (stable across PostgreSQL versions).
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID, JSON = 16, 17, 18, 19, 20, 21, 23, 25, 26, 114
FLOAT4, FLOAT8, MONEY, BPCHAR, VARCHAR, DATE, TIME = 700, 701, 790, 1042, 1043, 1082, 1083
TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID, JSONB = 1114, 1184, 1186, 1700, 2950, 3802

_DIRECT: dict[int, pa.DataType] = {
    BOOL: pa.bool_(), INT2: pa.int16(), INT4: pa.int32(), INT8: pa.int64(),
    FLOAT4: pa.float32(), FLOAT8: pa.float64(), BYTEA: pa.binary(),
    **dict.fromkeys((TEXT, VARCHAR, BPCHAR, NAME, CHAR, JSON, JSONB), pa.string()),
    DATE: pa.date32(), TIME: pa.time64("us"), TIMESTAMP: pa.timestamp("us"),
    TIMESTAMPTZ: pa.timestamp("us", tz="UTC"), UUID: pa.binary(16),
}
UUID_TAG = {METADATA_KEY: "uuid"}
JSON_TAG = {METADATA_KEY: "json"}
"""json and jsonb values are valid JSON (PostgreSQL checked them): the tag tells conform."""
INTERVAL_TAG = {METADATA_KEY: "interval"}
"""An interval as the ISO 8601 text PostgreSQL prints (``interval_text``)."""

# The smallest values PostgreSQL stores (4714-11-24 BC), in Arrow's units since 1970;
# ADBC turns +-infinity (and timestamps past year 294246) into values below these.
_MIN_DAYS = -2_440_588
_MIN_MICROS = _MIN_DAYS * 86_400_000_000
_DAY_MICROS = 86_400_000_000


class BadValue(ValueError):
    """A value the source cannot hand over exactly (the reader adds dataset and column)."""


@dataclass(frozen=True)
class TypeInfo:
    """What the catalog says about one result column's type."""

    oid: int
    typmod: int
    native: str  # format_type(oid, typmod)
    kind: str  # pg_type.typtype: b base, e enum, c composite, d domain, r range...
    element: int  # the element type of an array type (its base type for a domain), else 0
    element_kind: str
    server_version: int = 0  # the server's server_version_num (0: not known, take the newest)


@dataclass(frozen=True)
class ColumnPlan:
    """How one output column is read."""

    field: pa.Field  # name and Arrow type as ``read`` produces them
    expr: str  # the SELECT expression
    fix: Fix | None  # applied to each batch's array (ADBC's type -> ``field.type``)
    dims_check: bool  # an array: also select array_ndims() to reject 2-D values


def _unwrap(array: pa.Array) -> pa.Array:
    return array.storage if isinstance(array.type, pa.BaseExtensionType) else array


# PostgreSQL's text of the special numerics -> how ADBC spells them (in messages).
_SPECIAL_NUMERIC = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


def _decimal_fix(target: pa.DataType) -> Fix:
    """Parse numeric text (``col::text``) into ``target``; NaN and infinities are errors."""
    def fix(array: pa.Array) -> pa.Array:
        text = _unwrap(array)
        try:
            return pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = [_SPECIAL_NUMERIC.get(v, v) for v in text.to_pylist()
                   if v is not None and not v[-1:].isdigit()]
            raise BadValue(
                f"has the value {bad[0] if bad else '?'!r}, which {target} cannot hold; "
                "declare the column float64 and read it with query: (select col::float8 ...)"
            ) from None

    return fix


_SPECIAL_TEXT = pa.array(list(_SPECIAL_NUMERIC))
_SPECIAL_SPELLED = pa.array(list(_SPECIAL_NUMERIC.values()))


def _numeric_text(array: pa.Array) -> pa.Array:
    """A numeric without a precision as PostgreSQL prints it, with the special values
    spelled as ADBC spells them (``nan``, ``inf``, ``-inf``) as before."""
    text = _unwrap(array)
    special = pc.index_in(text, value_set=_SPECIAL_TEXT)
    if special.null_count == len(special):
        return text
    return pc.coalesce(pc.take(_SPECIAL_SPELLED, special), text)


def _range_fix(low: int | None, high: int | None, what: str, hint: str) -> Fix:
    def fix(array: pa.Array) -> pa.Array:
        if array.null_count == len(array):
            return array
        smallest, largest = pc.min_max(array.view(pa.int32() if pa.types.is_date32(array.type)
                                                  else pa.int64())).values()
        if (low is not None and smallest.as_py() < low) or (
            high is not None and largest.as_py() >= high
        ):
            raise BadValue(f"has {what}, which Arrow cannot represent; filter or map it in "
                           f"a query: (e.g. {hint})")
        return array

    return fix


def _list_fix(child: Fix | None, target: pa.DataType) -> Fix:
    def fix(array: pa.Array) -> pa.Array:
        if child is not None:
            values = child(array.values)
            array = pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())
        return array if array.type == target else pc.cast(array, target)

    return fix


_SENT_ARRAYS = {INT2, INT4, INT8, FLOAT4, FLOAT8, TEXT, VARCHAR, BPCHAR}
"""Element types of the arrays read as ``array_send(col)`` and decoded by ``arrays``."""


def _sent_array_fix(item: pa.DataType) -> Fix:
    def fix(array: pa.Array) -> pa.Array:
        try:
            return arrays.decode(_unwrap(array), item)
        except arrays.Dimensions as exc:
            raise BadValue(f"has a {exc.deepest}-dimensional array, which an Arrow list "
                           "cannot hold; declare it json and read it with query: "
                           "(to_jsonb(col))") from None

    return fix


def _interval_fix(server_version: int) -> Fix:
    # PostgreSQL 17 has infinite intervals (their binary form: every part at its limit).
    infinities = not server_version or server_version >= 170000

    def fix(array: pa.Array) -> pa.Array:
        return interval_text.to_iso_text(_unwrap(array), infinities=infinities)

    return fix


def _scalar(oid: int, kind: str, typmod: int
            ) -> tuple[str | None, pa.DataType, Fix | None, dict[str, str] | None]:
    """(SQL cast or None, Arrow type, fix, field metadata) of one scalar type."""
    if oid in (DATE, TIMESTAMP, TIMESTAMPTZ, TIME):
        if oid == TIME:
            fix = _range_fix(None, _DAY_MICROS, "the value 24:00:00",
                             "least(col, '23:59:59.999999')")
        else:
            fix = _range_fix(_MIN_DAYS if oid == DATE else _MIN_MICROS, None,
                             "infinity or a value beyond Arrow's range",
                             "nullif(col, 'infinity')")
        return None, _DIRECT[oid], fix, None
    if oid == UUID:
        return None, pa.binary(16), _unwrap, UUID_TAG
    if oid in (JSON, JSONB):
        return None, pa.string(), _unwrap, JSON_TAG
    if oid in _DIRECT:
        return None, _DIRECT[oid], None, None
    if oid == INTERVAL:
        return "text", pa.string(), None, INTERVAL_TAG
    if kind == "e":
        return None, pa.string(), None, None
    if oid == NUMERIC:
        scale = ((typmod - 4) & 0x7FF) - (((typmod - 4) & 0x400) << 1)  # 11-bit signed
        precision = ((typmod - 4) >> 16) & 0xFFFF
        if typmod >= 4 and 0 <= scale <= precision <= 76:
            target = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(
                precision, scale)
            return "text", target, _decimal_fix(target), None
        return "text", pa.string(), _numeric_text, None
    if oid == MONEY:
        return "numeric", pa.string(), _unwrap, None
    if oid == OID:
        return "int8", pa.int64(), None, None
    return "text", pa.string(), None, None


def plan_column(name: str, source: str, info: TypeInfo) -> ColumnPlan:
    """The plan that reads live column ``source`` (of type ``info``) as output ``name``."""
    column = ident(source)
    if info.element in _SENT_ARRAYS and info.element_kind == "b":
        item = _DIRECT[info.element]
        return ColumnPlan(pa.field(name, pa.list_(item)), f"array_send({column})",
                          _sent_array_fix(item), False)
    if info.element:
        cast, item, fix, metadata = _scalar(info.element, info.element_kind, info.typmod)
        if info.element_kind == "c":
            cast, item, fix, metadata = "text", pa.string(), None, None
        target = pa.list_(pa.field("item", item, metadata=metadata))
        expr = f"{column}::{cast}[]" if cast else column
        return ColumnPlan(pa.field(name, target), expr, _list_fix(fix, target), True)
    if info.kind == "c":
        return ColumnPlan(pa.field(name, pa.string()), f"to_jsonb({column})::text", None, False)
    if info.oid == INTERVAL:
        return ColumnPlan(pa.field(name, pa.string(), metadata=INTERVAL_TAG),
                          f"interval_send({column})", _interval_fix(info.server_version),
                          False)
    cast, arrow, fix, metadata = _scalar(info.oid, info.kind, info.typmod)
    expr = f"{column}::{cast}" if cast else column
    return ColumnPlan(pa.field(name, arrow, metadata=metadata), expr, fix, False)


CATALOG_QUERY = """
select t.oid::int8, x.m, format_type(x.o, nullif(x.m, -1)), t.typtype,
       coalesce(case when e.typtype = 'd' then e.typbasetype else e.oid end, 0)::int8,
       coalesce(case when e.typtype = 'd' then b.typtype else e.typtype end, '')
from unnest(%s::oid[], %s::int4[]) with ordinality as x(o, m, i)
join pg_type t on t.oid = x.o
left join pg_type e on e.oid = t.typelem and t.typcategory = 'A'
left join pg_type b on b.oid = e.typbasetype
order by x.i
"""
"""Type facts for (oid, typmod) pairs, in order: psycopg parameters, two arrays."""

UNIQUE_INDEXES_QUERY = """
select array_agg(a.attname::text)
from pg_index i
cross join lateral unnest(i.indkey::int2[]) as k(n)
join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.n
where i.indrelid = to_regclass(%s) and i.indisunique and i.indimmediate
  and i.indpred is null and i.indexprs is null and i.indisvalid
group by i.indexrelid
"""
"""The columns of each unique, immediate, whole-table index on plain columns of a table."""
