"""Conforming incoming Arrow data to declared schemas (dataferry.store.conform).

A hypothesis strategy builds random declared schemas (every model type, nested up to
depth 3) with matching random input in many shapes, and expected values; conformed data
must survive Parquet exactly. Low-precision floats are checked bit pattern by bit pattern.
Every error rule has a test that the message names the dataset, column and row key.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import uuid
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal as PyDecimal
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.errors import StoreError
from dataferry.model.spec import Column
from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    format_type,
    from_arrow_field,
    parse_type,
)
from dataferry.store.conform import Conformer, SchemaError, declared_schema, to_python_friendly

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DATASET = "shop.orders"

# --- reference low-precision floats (independent of the implementation) --------------

FORMATS = {  # exponent bits, mantissa bits, IEEE-like (inf/NaN at the top exponent)
    "float16": (5, 10, True),
    "bfloat16": (8, 7, True),
    "float8_e4m3": (4, 3, False),
    "float8_e5m2": (5, 2, True),
}


def reference_decode(name: str, bits: int) -> float:
    exponent_bits, mantissa_bits, ieee = FORMATS[name]
    bias = (1 << (exponent_bits - 1)) - 1
    sign = -1.0 if bits >> (exponent_bits + mantissa_bits) else 1.0
    exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = bits & ((1 << mantissa_bits) - 1)
    top = (1 << exponent_bits) - 1
    if ieee and exponent == top:
        return math.copysign(math.inf, sign) if mantissa == 0 else math.nan
    if not ieee and exponent == top and mantissa == (1 << mantissa_bits) - 1:
        return math.nan
    significand = Fraction(mantissa + ((1 << mantissa_bits) if exponent else 0))
    return math.copysign(float(significand * Fraction(2) ** (max(exponent, 1) - bias
                                                                 - mantissa_bits)), sign)


@cache
def finite_positives(name: str) -> tuple[list[Fraction], list[int]]:
    exponent_bits, mantissa_bits, _ = FORMATS[name]
    values, patterns = [], []
    for bits in range(1 << (exponent_bits + mantissa_bits)):
        value = reference_decode(name, bits)
        if math.isfinite(value):
            values.append(Fraction(value))
            patterns.append(bits)
    return values, patterns


def reference_round(name: str, x: float) -> float:
    """Nearest value of the format, ties to the even bit pattern; None if it overflows."""
    if math.isnan(x) or math.isinf(x):
        return x
    values, patterns = finite_positives(name)
    target = Fraction(abs(x))
    i = bisect_left(values, target)
    if i == len(values):
        raise OverflowError(x)
    if values[i] != target and i > 0:
        below, above = target - values[i - 1], values[i] - target
        if below < above or (below == above and patterns[i - 1] % 2 == 0):
            i -= 1
    return math.copysign(float(values[i]), x)


def max_finite(name: str) -> float:
    return float(finite_positives(name)[0][-1])


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


# --- random declared types with matching input and expected values --------------------


@dataclass
class Gen:
    """A declared type, the Arrow type the input is built with, and (input, expected) pairs."""

    declared: DataType
    input_type: pa.DataType
    pairs: st.SearchStrategy[tuple[Any, Any]]


TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "😀", "e\u0301", "👩‍👩‍👧", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a\x00b", " padded ", "ñ" * 5, "\u200b"]
)
ZONES = [UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/St_Johns"),
         timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=30))]
FAR = {"min_value": datetime(1, 1, 2), "max_value": datetime(9999, 12, 30, 23, 59, 59)}
INT_RANGES = {f"{u}int{b}": ((0, (1 << b) - 1) if u else (-(1 << (b - 1)), (1 << (b - 1)) - 1))
              for u in ("", "u") for b in (8, 16, 32, 64)}


def same(pairs: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, Any]]:
    return pairs.map(lambda v: (v, v))


@st.composite
def iso_durations(draw: st.DrawFn) -> str:
    """ISO 8601 duration text as PostgreSQL prints it: a sign on each part, seconds with
    up to 6 fractional digits, every part optional (``PT0S`` when none)."""
    def part(bound: int, designator: str) -> str:
        value = draw(st.none() | st.integers(-bound, bound) | st.just(0))
        return "" if value is None else f"{value}{designator}"
    date = "".join(part(b, d) for b, d in ((10**5, "Y"), (1000, "M"), (1000, "W"),
                                           (10**6, "D")))
    time = "".join(part(b, d) for b, d in ((10**6, "H"), (10**5, "M")))
    if draw(st.booleans()):
        sign = draw(st.sampled_from(["", "-"]))
        fraction = draw(st.none() | st.from_regex(r"[0-9]{1,6}", fullmatch=True))
        time += f"{sign}{draw(st.integers(0, 10**6))}{'' if fraction is None else '.' + fraction}S"
    text = "P" + date + ("T" + time if time else "")
    return text if text != "P" else "PT0S"


def duration_text(micros: int) -> str:
    """The text conform writes for a duration of ``micros`` microseconds."""
    whole, fraction = divmod(abs(micros), 10**6)
    digits = f".{fraction:06d}".rstrip("0") if fraction else ""
    return f"PT{'-' if micros < 0 else ''}{whole}{digits}S"


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | TEXT | st.floats(
        allow_nan=False, allow_infinity=False)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)


@st.composite
def primitive_gen(draw: st.DrawFn, key: bool = False) -> Gen:
    names = [*sorted(INT_RANGES), "bool", "string", "date", "uuid"]
    if not key:
        names += ["float16", "bfloat16", "float8_e4m3", "float8_e5m2", "float32", "float64",
                  "binary", "time", "timestamp", "timestamp_tz", "json", "interval"]
    kind = draw(st.sampled_from([*names, "decimal", "string(n)"]))
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        values = st.integers(low, high) | st.sampled_from([low, high, 0])
        shape = draw(st.sampled_from(["exact", "int64", "string", "decimal"]))
        declared = Primitive(kind)
        if shape == "string":
            return Gen(declared, pa.string(), values.map(lambda v: (str(v), v)))
        if shape == "decimal":
            return Gen(declared, pa.decimal128(20, 0), values.map(lambda v: (PyDecimal(v), v)))
        if shape == "int64" and kind != "uint64":
            return Gen(declared, pa.int64(), same(values))
        return Gen(declared, getattr(pa, kind)(), same(values))
    if kind == "decimal":
        precision = draw(st.sampled_from([1, 5, 18, 38, 39, 76]) | st.integers(1, 76))
        scale = draw(st.sampled_from([0, precision]) | st.integers(0, precision))
        limit = 10**precision - 1
        unscaled = st.integers(-limit, limit) | st.sampled_from([limit, -limit, 0, 1])
        values = unscaled.map(lambda u: PyDecimal(f"{u}E-{scale}"))
        declared = Decimal(precision, scale)
        shape = draw(st.sampled_from(["exact", "wide", "string"]))
        if shape == "string":
            return Gen(declared, pa.string(), values.map(lambda v: (str(v), v)))
        if shape == "wide":
            return Gen(declared, pa.decimal256(76, scale), same(values))
        exact = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(
            precision, scale)
        return Gen(declared, exact, same(values))
    if kind in FORMATS:
        bound = max_finite(kind)
        values = st.floats(-bound, bound) | st.just(math.nan) | st.sampled_from(
            [0.0, -0.0, bound, -bound, 2.0**-140, 1 / 3])
        if kind != "float8_e4m3":
            values |= st.sampled_from([math.inf, -math.inf])
        input_type = draw(st.sampled_from([pa.float64(), pa.float32()]))
        if input_type == pa.float32():  # the input holds the value rounded to float32
            values = values.map(lambda v: f32(v) if math.isfinite(v) else v)
        return Gen(Primitive(kind), input_type, values.map(lambda v: (v, reference_round(kind, v))))
    if kind == "float32":
        values = st.floats(width=32) | st.floats(-3.4e38, 3.4e38)
        return Gen(Primitive(kind), pa.float64(), values.map(lambda v: (v, f32(v))))
    if kind == "float64":
        values = st.floats() | st.sampled_from([5e-324, -0.0, 1.7976931348623157e308])
        if draw(st.booleans()):
            return Gen(Primitive(kind), pa.string(), values.map(lambda v: (repr(v), v)))
        return Gen(Primitive(kind), pa.float64(), same(values))
    if kind == "bool":
        if draw(st.booleans()):
            words = st.sampled_from([("true", True), ("False", False), ("1", True), ("0", False)])
            return Gen(Primitive(kind), pa.string(), words)
        return Gen(Primitive(kind), pa.bool_(), same(st.booleans()))
    if kind == "string":
        input_type = draw(st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]))
        return Gen(Primitive(kind), input_type, same(TEXT))
    if kind == "string(n)":
        length = draw(st.integers(1, 12))
        text = st.text(st.characters(codec="utf-8"), max_size=length)
        return Gen(String(length), pa.string(), same(text))
    if kind == "binary":
        input_type = draw(st.sampled_from([pa.binary(), pa.large_binary()]))
        return Gen(Primitive(kind), input_type, same(st.binary(max_size=20)))
    if kind == "date":
        if draw(st.booleans()):
            return Gen(Primitive(kind), pa.string(), st.dates().map(lambda d: (d.isoformat(), d)))
        return Gen(Primitive(kind), pa.date32(), same(st.dates()))
    if kind == "time":
        if draw(st.booleans()):
            return Gen(Primitive(kind), pa.string(), st.times().map(lambda t: (t.isoformat(), t)))
        return Gen(Primitive(kind), draw(st.sampled_from([pa.time64("us"), pa.time64("ns")])),
                   same(st.times()))
    if kind == "timestamp":
        values = st.datetimes(**FAR)
        if draw(st.booleans()):
            return Gen(Primitive(kind), pa.string(), values.map(lambda d: (d.isoformat(), d)))
        return Gen(Primitive(kind), pa.timestamp("us"), same(values))
    if kind == "timestamp_tz":
        aware = st.datetimes(**FAR, timezones=st.sampled_from(ZONES))
        shape = draw(st.sampled_from(["zone", "string", "naive"]))
        if shape == "naive":  # naive input is taken to be UTC
            return Gen(Primitive(kind), pa.timestamp("us"), st.datetimes(**FAR).map(
                lambda d: (d, d.replace(tzinfo=UTC))))
        if shape == "string":  # ISO 8601 offsets have no seconds (local mean time has)
            whole = aware.filter(lambda d: d.utcoffset() % timedelta(minutes=1) == timedelta())
            return Gen(Primitive(kind), pa.string(), whole.map(lambda d: (d.isoformat(), d)))
        zone = draw(st.sampled_from(["Asia/Kolkata", "UTC", "+14:00", "America/St_Johns"]))
        return Gen(Primitive(kind), pa.timestamp("us", zone), same(aware))
    if kind == "uuid":
        shape = draw(st.sampled_from(["text", "TEXT", "hex", "bytes", "fixed"]))
        ids = st.uuids()
        if shape in ("bytes", "fixed"):
            input_type = pa.binary() if shape == "bytes" else pa.binary(16)
            return Gen(Primitive(kind), input_type, ids.map(lambda u: (u.bytes, str(u))))
        text = {"text": str, "TEXT": lambda u: str(u).upper(), "hex": lambda u: u.hex}[shape]
        return Gen(Primitive(kind), pa.string(), ids.map(lambda u: (text(u), str(u))))
    if kind == "interval":
        if draw(st.booleans()):
            spans = st.integers(-(10**15), 10**15)
            return Gen(Primitive(kind), pa.duration("us"), spans.map(
                lambda n: (timedelta(microseconds=n), duration_text(n))))
        return Gen(Primitive(kind), pa.string(), same(iso_durations()))
    assert kind == "json"
    texts = st.tuples(json_values(), st.booleans(), st.sampled_from([None, 2])).map(
        lambda t: json.dumps(t[0], ensure_ascii=t[1], indent=t[2]))
    return Gen(Primitive(kind), pa.string(), same(texts))


FIELD_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


@st.composite
def column_gen(draw: st.DrawFn, depth: int = 3) -> Gen:
    kind = draw(st.sampled_from(["primitive"] * 3 + (["list", "struct", "map"] if depth else [])))
    if kind == "primitive":
        return draw(primitive_gen())
    if kind == "list":
        item = draw(column_gen(depth - 1))
        values = st.lists(nullable(item.pairs), max_size=3).map(
            lambda ps: ([i for i, _ in ps], [e for _, e in ps]))
        wrapper = draw(st.sampled_from([pa.list_, pa.large_list]))
        return Gen(ListType(item.declared), wrapper(item.input_type), values)
    if kind == "map":
        key, value = draw(primitive_gen(key=True)), draw(column_gen(depth - 1))
        entries = st.lists(st.tuples(key.pairs, nullable(value.pairs)), max_size=3).map(
            lambda es: ([(k[0], v[0]) for k, v in es], [(k[1], v[1]) for k, v in es]))
        input_type = pa.map_(key.input_type, value.input_type)
        return Gen(MapType(key.declared, value.declared), input_type, entries)
    names = draw(st.lists(FIELD_NAMES, min_size=1, max_size=3, unique_by=str.lower))
    children = [draw(column_gen(depth - 1)) for _ in names]
    order = draw(st.permutations(range(len(names))))  # input fields in another order
    input_type = pa.struct([(names[i], children[i].input_type) for i in order])

    def build(pairs: tuple[tuple[Any, Any], ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({n: p[0] for n, p in zip(names, pairs, strict=True)},
                {n: p[1] for n, p in zip(names, pairs, strict=True)})

    values = st.tuples(*(nullable(c.pairs) for c in children)).map(build)
    declared = StructType(tuple((n, c.declared) for n, c in zip(names, children, strict=True)))
    return Gen(declared, input_type, values)


def nullable(pairs: st.SearchStrategy[tuple[Any, Any]]) -> st.SearchStrategy[tuple[Any, Any]]:
    return st.just((None, None)) | pairs


def equal(a: Any, b: Any) -> bool:
    """Exact equality of Python values: NaN equals NaN, -0.0 differs from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime) and isinstance(b, datetime):
        if (a.tzinfo is None) != (b.tzinfo is None):
            return False
        # the instants (== across zones is never true in a repeated hour, PEP 495)
        return bool(a.replace(tzinfo=None) - (a.utcoffset() or timedelta())
                    == b.replace(tzinfo=None) - (b.utcoffset() or timedelta()))
    return type(a) is type(b) and bool(a == b)


def columns_of(types: dict[str, DataType], nullable: dict[str, bool]) -> dict[str, Column]:
    return {n: Column(type=format_type(t), nullable=nullable[n]) for n, t in types.items()}


def draw_columns(data: st.DataObject, min_rows: int = 0, dictionaries: bool = False) -> tuple[
    dict[str, DataType], dict[str, bool], dict[str, pa.Array], dict[str, list[Any]]
]:
    """Random declared columns c0.., their nullability, input arrays and expected values."""
    gens = data.draw(st.lists(column_gen(), min_size=1, max_size=4), label="columns")
    names = [f"c{i}" for i in range(len(gens))]
    nulls_ok = {n: data.draw(st.booleans(), label=f"{n} nullable") for n in names}
    rows = data.draw(st.integers(min_rows, 6), label="rows")
    inputs, expected = {}, {}
    for name, gen in zip(names, gens, strict=True):
        pairs = nullable(gen.pairs) if nulls_ok[name] else gen.pairs
        drawn = data.draw(st.lists(pairs, min_size=rows, max_size=rows), label=name)
        array = pa.array([i for i, _ in drawn], type=gen.input_type)
        if dictionaries and data.draw(st.booleans(), label=f"{name} dictionary") and (
            pa.types.is_string(array.type)
        ):
            array = array.dictionary_encode()
        inputs[name], expected[name] = array, [e for _, e in drawn]
    declared = {n: g.declared for n, g in zip(names, gens, strict=True)}
    return declared, nulls_ok, inputs, expected


# --- the round trip through Parquet ----------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_random_schemas_round_trip_through_parquet(data: st.DataObject) -> None:
    declared, nulls_ok, inputs, expected = draw_columns(data, dictionaries=True)
    names = list(declared)
    columns = columns_of(declared, nulls_ok)
    shuffled = data.draw(st.permutations(names), label="input column order")
    table = pa.table({n: inputs[n] for n in shuffled})

    batch = Conformer(DATASET, columns).conform(table)

    assert batch.schema.equals(declared_schema(columns), check_metadata=True)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_batches([batch]), buffer, compression="zstd")
    back = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert [from_arrow_field(f) for f in back.schema] == list(declared.values())
    assert [f.nullable for f in back.schema] == [nulls_ok[n] for n in names]
    got = to_python_friendly(back).to_pydict()
    for name in names:
        assert equal(got[name], expected[name]), (name, declared[name], got[name],
                                                  expected[name])


# --- low-precision floats bit by bit ----------------------------------------------------


def stored(name: str, bits: list[int]) -> pa.Table:
    field = pa.field("x", pa.uint8() if name.startswith("float8") else pa.uint16(),
                     metadata={"dataferry.type": name})
    array = pa.array(bits, field.type)
    if name == "float16":
        field, array = pa.field("x", pa.float16()), array.view(pa.float16())
    return pa.Table.from_arrays([array], schema=pa.schema([field]))


def bits_of(name: str, table: pa.Table | pa.RecordBatch) -> list[int]:
    array = table.column(0)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if name == "float16":
        array = array.view(pa.uint16())
    return list(array.to_pylist())


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_bit_pattern_decodes_exactly_and_encodes_back(name: str) -> None:
    exponent_bits, mantissa_bits, _ = FORMATS[name]
    patterns = list(range(1 << (1 + exponent_bits + mantissa_bits)))
    decoded = to_python_friendly(stored(name, patterns))
    assert decoded.schema.field(0).type == pa.float32()
    assert not decoded.schema.field(0).metadata
    values = decoded.column(0).to_pylist()
    for bits, value in zip(patterns, values, strict=True):
        assert equal(value, reference_decode(name, bits)), (hex(bits), value)
        assert math.isnan(value) or f32(value) == value
    conformer = Conformer(DATASET, {"x": Column(type=name)})
    assert bits_of(name, conformer.conform(decoded)) == patterns
    # float64 input (the usual Python side) gives the same bits, NaN payloads aside
    as64 = pa.table({"x": decoded.column(0).cast(pa.float64())})
    again = bits_of(name, conformer.conform(as64))
    for bits, value, back in zip(patterns, values, again, strict=True):
        assert back == bits or math.isnan(value), hex(bits)


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_rounding_is_to_nearest_even(name: str, data: st.DataObject) -> None:
    values, _ = finite_positives(name)
    bound = max_finite(name)
    i = data.draw(st.integers(0, len(values) - 2))
    midpoint = float((values[i] + values[i + 1]) / 2)  # exact in float64: a tie
    xs = data.draw(st.lists(st.floats(-bound, bound) | st.sampled_from(
        [midpoint, -midpoint, math.nextafter(midpoint, 0), math.nextafter(midpoint, 9)]),
        min_size=1, max_size=20))
    out = Conformer(DATASET, {"x": Column(type=name)}).conform(pa.table({"x": xs}))
    got = to_python_friendly(out).column(0).to_pylist()
    assert all(equal(g, reference_round(name, x)) for g, x in zip(got, xs, strict=True)), xs


@pytest.mark.parametrize(("name", "value"), [
    ("float8_e4m3", 480.0), ("float8_e4m3", math.inf), ("float8_e4m3", -1e6),
    ("float8_e5m2", 61440.0), ("bfloat16", 3.4e38), ("float16", 65520.0),
    ("float32", 1e39),
])
def test_low_precision_overflow_is_an_error(name: str, value: float) -> None:
    conformer = Conformer(DATASET, {"id": Column(type="int64"), "x": Column(type=name)}, ["id"])
    with pytest.raises(SchemaError) as caught:
        conformer.conform(pa.table({"id": [5, 7], "x": [1.0, value]}))
    assert caught.value.key == {"id": 7}
    assert caught.value.column == "x"
    assert f"declared {name}" in str(caught.value)


def test_low_precision_keeps_what_fits() -> None:
    # the largest finite values, and halfway below the next step (rounds down to even)
    columns = {n: Column(type=n) for n in FORMATS}
    table = pa.table({n: [max_finite(n), -max_finite(n), math.nan, 464.0 if n == "float8_e4m3"
                          else 0.0] for n in FORMATS})
    got = to_python_friendly(Conformer(DATASET, columns).conform(table)).to_pydict()
    for name in FORMATS:
        assert got[name][:2] == [max_finite(name), -max_finite(name)]
        assert math.isnan(got[name][2])
    assert got["float8_e4m3"][3] == 448.0


# --- every error rule names the dataset, the column and the row ----------------------


def conform_one(type_text: str, values: list[Any], input_type: pa.DataType | None = None,
                nullable: bool = True) -> pa.RecordBatch:
    """Conform ``values`` as column ``x`` next to a primary key ``id`` = 5, 7, 9, ..."""
    columns = {"id": Column(type="int64", nullable=False),
               "x": Column(type=type_text, nullable=nullable)}
    ids = [5 + 2 * i for i in range(len(values))]
    table = pa.table({"id": ids, "x": pa.array(values, input_type)})
    return Conformer(DATASET, columns, ["id"]).conform(table)


def rejected(type_text: str, values: list[Any], input_type: pa.DataType | None = None,
             nullable: bool = True) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        conform_one(type_text, values, input_type, nullable)
    return caught.value


ERRORS = [  # declared type, values (the bad one at id=7), input type, words of the message
    ("interval", ["P1D", "1 day"], pa.string(), "value '1 day' is not an ISO 8601 duration"),
    ("interval", ["PT1S", "PT0.0000001S"], pa.string(), "is not an ISO 8601 duration"),
    ("interval", ["PT1S", "PT"], pa.string(), "value 'PT' is not an ISO 8601 duration"),
    ("interval", ["P1D", "P2147483648M"], pa.string(), "has more months than an interval"),
    ("interval", ["P1D", "PT2562048H"], pa.string(), "beyond 2562047:47:16.854775"),
    ("interval", [0, 1], pa.duration("ns"), "is finer than a microsecond"),
    ("int8", [1, 300], pa.int64(), "value 300 is out of range for int8 (-128..127)"),
    ("uint32", [1, -1], pa.int64(), "value -1 is out of range for uint32"),
    ("int64", [1, 2**64 - 1], pa.uint64(), "out of range for int64"),
    ("int32", [1.0, 1.5], pa.float64(), "value 1.5 has a fractional part"),
    ("int32", [1.0, math.nan], pa.float64(), "is not a number"),
    ("int16", ["1.0", "1.5"], pa.string(), "value '1.5' has a fractional part"),
    ("int8", ["1e2", "1e3"], pa.string(), "value '1e3' is out of range for int8"),
    ("int16", ["1", "12a"], pa.string(), "value '12a' is not an integer"),
    ("int64", [PyDecimal("1"), PyDecimal("2.5")], pa.decimal128(5, 1), "has a fractional part"),
    ("float32", [1, 2**24 + 1], pa.int64(), "not exactly representable in float32"),
    ("float64", ["1", "one"], pa.string(), "value 'one' is not a number"),
    ("decimal(10,2)", [PyDecimal("1.5"), PyDecimal("1.234")], pa.decimal128(10, 3),
     "has more than 2 digits after the decimal point"),
    ("decimal(5,2)", [PyDecimal("1"), PyDecimal("1234.5")], None,
     "has more than 3 digits before the decimal point"),
    ("decimal(76,0)", ["1", "1" + "0" * 76], pa.string(), "more than 76 digits before"),
    ("decimal(10,2)", [0.5, 0.125], pa.float64(), "value 0.125 has more than 2 digits after"),
    ("decimal(10,2)", [0.5, math.inf], pa.float64(), "is not a finite number"),
    ("decimal(4,1)", [1, 12345], pa.int64(), "more than 3 digits before"),
    ("string(3)", ["abc", "abcd"], None, "value 'abcd' has 4 characters, more than string(3)"),
    ("string(1)", ["😀", "e\u0301"], None, "has 2 characters, more than string(1) allows"),
    ("string", [b"ok", b"\xff"], pa.binary(), "is not valid UTF-8 text"),
    ("bool", ["true", "yes"], pa.string(), "value 'yes' is not a boolean"),
    ("bool", [1, 2], pa.int64(), "value 2 is not 0 or 1"),
    ("date", ["2024-02-29", "2023-02-29"], pa.string(), "value '2023-02-29' is not a date"),
    ("time", ["12:00", "noon"], pa.string(), "value 'noon' is not a time"),
    ("time", ["23:59:59", "24:00:00"], pa.string(), "value '24:00:00' is not a"),
    ("time", [time(1), time(1)], pa.time64("ns"), None),  # placeholder replaced below
    ("timestamp", ["2024-05-01T12:00:00", "2024-05-01T25:00:00"], pa.string(),
     "value '2024-05-01T25:00:00' is not an ISO 8601 timestamp"),
    ("timestamp", ["2024-05-01T12:00:00", "2024-05-01T12:00:00+02:00"], pa.string(),
     "has a time zone offset"),
    ("timestamp", [None, datetime(2024, 1, 1, tzinfo=UTC)], pa.timestamp("us", "Europe/Paris"),
     "has a time zone (Europe/Paris)"),
    ("timestamp_tz", ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.1234567Z"], pa.string(),
     "is not an ISO 8601 timestamp"),
    ("timestamp_tz", ["2024-05-01T12:00:00Z", "1935-01-01T00:00:00-03:30:52"], pa.string(),
     "is not an ISO 8601 timestamp"),
    ("uuid", ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-42661417400"],
     pa.string(), "is not a UUID"),
    ("uuid", ["123e4567e89b12d3a456426614174000", "123e4567-e89b12d3a456426614174000"],
     pa.string(), "is not a UUID"),
    ("uuid", [b"x" * 16, b"x" * 15], pa.binary(), "has 15 bytes, a UUID has 16"),
    ("json", ['{"a": 1}', '{"a": 1'], pa.string(), "value '{\"a\": 1' is not valid JSON"),
    ("json", ["[1]", "NaN"], pa.string(), "NaN is not JSON"),
    ("json", [{"a": 1.0}, {"a": math.nan}], None, "cannot be written as JSON"),
    ("json", [{"a": None}, {"a": b"x"}], None, "base64"),
    ("float8_e4m3", [1.0, 480.0], pa.float64(), "beyond the largest finite float8_e4m3 (448)"),
    ("float8_e4m3", [1.0, -math.inf], pa.float64(), "float8_e4m3 has no infinity"),
    ("int64", [1, None], pa.int64(), "the value is null, but the column is not nullable"),
    ("int64", [None, {"a": 2}], None, "type struct<a: int64> is not accepted for int64"),
    ("list<int8>", [[1], [2, 300]], None, "(field x[])"),
    ("list<int8>", [[1], 5], None, None),  # placeholder replaced below
    ("struct<a:int8, b:string>", [{"a": 1, "b": "x"}, {"a": 1000, "b": "y"}], None,
     "(field x.a) at row 1 (id=7): value 1000 is out of range"),
    ("map<string,int8>", [[("a", 1)], [("b", 2), ("c", 999)]], pa.map_(pa.string(),
     pa.int64()), "(field x{value}) at row 1 (id=7): value 999"),
    ("map<string(2),int8>", [[("a", 1)], [("abc", 2)]], pa.map_(pa.string(), pa.int64()),
     "(field x{key}) at row 1 (id=7): value 'abc' has 3 characters"),
    ("map<int8,int8>", [[(1, 1)], [(None, 2)]],
     pa.list_(pa.struct([("key", pa.int64()), ("value", pa.int64())])), "the map key is null"),
    ("list<struct<a:list<float8_e5m2>>>", [[], [{"a": [1.0]}, {"a": [0.5, 1e6]}]], None,
     "(field x[].a[]) at row 1 (id=7): value 1000000.0 is beyond the largest finite"),
]
ERRORS = [e for e in ERRORS if e[3] is not None]


@pytest.mark.parametrize(("type_text", "values", "input_type", "words"), ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_each_error_names_dataset_column_key_and_types(
    type_text: str, values: list[Any], input_type: pa.DataType | None, words: str
) -> None:
    error = rejected(type_text, values, input_type, nullable=words[:9] != "the value")
    message = str(error)
    assert isinstance(error, StoreError)
    assert (error.dataset, error.column, error.key) == (DATASET, "x", {"id": 7})
    assert message == error.message
    assert message.startswith(f"{DATASET}: column 'x'")
    assert "at row 1 (id=7)" in message
    assert words in message
    assert f"declared {format_type(parse_type(type_text))}" in message or "(field x" in message
    assert "source type " in message
    assert message.rstrip().split("; ")[-1]  # says what to do


def test_an_error_without_a_primary_key_names_the_row_across_batches() -> None:
    conformer = Conformer(DATASET, {"x": Column(type="int8")})
    batches = [pa.record_batch({"x": [1, 2, 3]}), pa.record_batch({"x": [4, 500]})]
    reader = conformer.conform_reader(iter(batches))
    assert reader.read_next_batch().num_rows == 3
    with pytest.raises(SchemaError) as caught:
        reader.read_next_batch()
    assert caught.value.key == {"row": 4}
    assert "column 'x' at row 4: value 500 is out of range" in str(caught.value)


def test_values_of_pii_columns_are_not_shown() -> None:
    columns = {"email": Column(type="string(5)", pii=True)}
    with pytest.raises(SchemaError) as caught:
        Conformer(DATASET, columns).conform(pa.table({"email": ["alice@example.com"]}))
    assert "alice" not in str(caught.value)
    assert "<hidden: pii column>" in str(caught.value)


def test_schema_errors_pickle() -> None:
    import pickle

    error = rejected("int8", [1, 300], pa.int64())
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.dataset, copy.column, copy.key, str(copy)) == (
        error.dataset, error.column, error.key, str(error))


# --- columns by name: extra, missing, order ------------------------------------------


def test_extra_columns_are_dropped_with_one_warning_each() -> None:
    warnings: list[str] = []
    conformer = Conformer(DATASET, {"id": Column(type="int64")}, on_warning=warnings.append)
    batch = pa.record_batch({"extra": ["a"], "id": [1], "s": [{"a": 1, "junk": 2}]})
    for _ in range(3):
        assert conformer.conform(batch).schema.names == ["id"]
    assert warnings == [f"{DATASET}: column 'extra' is not declared; ignored — declare it in "
                        "the model to keep it",
                        f"{DATASET}: column 's' is not declared; ignored — declare it in the "
                        "model to keep it"]


def test_undeclared_struct_fields_are_dropped_with_a_warning() -> None:
    warnings: list[str] = []
    conformer = Conformer(DATASET, {"s": Column(type="struct<a:int8>")},
                          on_warning=warnings.append)
    out = conformer.conform(pa.table({"s": [{"junk": "x", "a": 1}]}))
    assert out.to_pylist() == [{"s": {"a": 1}}]
    assert warnings == [f"{DATASET}: struct field 's.junk' is not declared; ignored — declare "
                        "it in the model to keep it"]
    nested = Conformer(DATASET, {"l": Column(type="list<map<string,struct<a:int8>>>")},
                       on_warning=warnings.append)
    entries = pa.map_(pa.string(), pa.struct([("a", pa.int8()), ("zz", pa.int8())]))
    nested.conform(pa.table({"l": pa.array([[[("k", {"a": 1, "zz": 2})]]], pa.list_(entries))}))
    assert "struct field 'l[]{value}.zz' is not declared" in warnings[-1]


def test_a_missing_column_is_an_error_even_if_nullable() -> None:
    columns = {"id": Column(type="int64"), "customer_id": Column(type="int64")}
    with pytest.raises(SchemaError) as caught:
        Conformer(DATASET, columns).conform(pa.table({"id": [1], "customerid": [2]}))
    error = caught.value
    assert (error.column, error.key) == ("customer_id", {})
    assert "declared column 'customer_id' is missing" in str(error)
    assert "found: 'id', 'customerid'" in str(error)
    assert "did you mean 'customerid'?" in str(error)


def test_a_missing_column_fails_when_the_reader_is_made() -> None:
    reader = pa.RecordBatchReader.from_batches(pa.schema([("a", pa.int64())]), iter([]))
    with pytest.raises(SchemaError, match="declared column 'ID' is missing"):
        Conformer(DATASET, {"ID": Column(type="int64")}).conform_reader(reader)


def test_a_missing_struct_field_is_an_error() -> None:
    with pytest.raises(SchemaError, match=r"column 's': the struct has no field 'b' \(found: "
                       r"a\)"):
        Conformer(DATASET, {"s": Column(type="struct<a:int8, b:int8>")}).conform(
            pa.table({"s": [{"a": 1}]}))


def test_duplicate_input_columns_are_an_error() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(SchemaError, match="appears more than once"):
        Conformer(DATASET, {"a": Column(type="int64")}).conform(table)


def test_columns_come_out_in_declared_order_with_declared_nullability() -> None:
    columns = {"b": Column(type="string", nullable=False), "a": Column(type="int8")}
    out = Conformer(DATASET, columns).conform(pa.table({"a": [1], "b": ["x"]}))
    assert out.schema.names == ["b", "a"]
    assert [f.nullable for f in out.schema] == [False, True]
    assert out.schema.equals(declared_schema(columns), check_metadata=True)


# --- input shapes ---------------------------------------------------------------------


def test_dictionary_arrays_are_decoded() -> None:
    u = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
    table = pa.table({
        "s": pa.array(["a", "b", "a", None]).dictionary_encode(),
        "n": pa.array(["1", "2", "1", None]).dictionary_encode(),
        "u": pa.array([str(u)] * 3 + [None]).dictionary_encode(),
        "l": pa.array([["x"], ["y", "x"], [], None], pa.list_(pa.dictionary(pa.int8(),
                                                                            pa.string()))),
    })
    columns = {"s": Column(type="string(1)"), "n": Column(type="int8"),
               "u": Column(type="uuid"), "l": Column(type="list<string>")}
    out = to_python_friendly(Conformer(DATASET, columns).conform(table)).to_pydict()
    assert out == {"s": ["a", "b", "a", None], "n": [1, 2, 1, None], "u": [str(u)] * 3 + [None],
                   "l": [["x"], ["y", "x"], [], None]}


def test_csv_like_all_string_input(tmp_path: Path) -> None:
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "id,qty,price,ok,day,at,at_utc,clock,ref,doc,rate,tiny,name,blob\n"
        "1, 42 ,12.50,TRUE,2024-05-01,2024-05-01T12:30:00,2024-05-01T12:30:00+02:00,"
        "12:30:05.25,123E4567E89B12D3A456426614174000,\"{\"\"a\"\": 1}\",1e-3,-0.5,"
        " Zoë ,raw\n"
        "2,,,,,,,,,,,,,\n", encoding="utf-8")
    strings = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in csv.read_text().splitlines()[0].split(",")},
        strings_can_be_null=False)
    table = pacsv.read_csv(csv, convert_options=strings)
    assert all(t == pa.string() for t in table.schema.types)
    columns = {"id": "int64", "qty": "int32", "price": "decimal(10,2)", "ok": "bool",
               "day": "date", "at": "timestamp", "at_utc": "timestamp_tz", "clock": "time",
               "ref": "uuid", "doc": "json", "rate": "float64", "tiny": "bfloat16",
               "name": "string", "blob": "binary"}
    conformer = Conformer(DATASET, {n: Column(type=t) for n, t in columns.items()}, ["id"])
    rows = to_python_friendly(conformer.conform(table)).to_pylist()
    assert rows[0] == {
        "id": 1, "qty": 42, "price": PyDecimal("12.50"), "ok": True, "day": date(2024, 5, 1),
        "at": datetime(2024, 5, 1, 12, 30),
        "at_utc": datetime(2024, 5, 1, 10, 30, tzinfo=ZoneInfo("UTC")),
        "clock": time(12, 30, 5, 250000), "ref": "123e4567-e89b-12d3-a456-426614174000",
        "doc": '{"a": 1}', "rate": 0.001, "tiny": -0.5, "name": " Zoë ", "blob": b"raw"}
    # an empty field is missing for every type but text and binary
    assert rows[1] == {n: None for n in columns} | {"id": 2, "name": "", "blob": b""}


def test_many_input_shapes_for_one_declared_type() -> None:
    at = datetime(2024, 5, 1, 12, 30, 0, 123000)
    shapes = [
        pa.array([at], pa.timestamp("ms")), pa.array([at], pa.timestamp("ns")),
        pa.array([at.replace(tzinfo=UTC)], pa.timestamp("ms", "UTC")),
        pa.array([at.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))],
                 pa.timestamp("ns", "Asia/Tokyo")),
        pa.array(["2024-05-01T21:30:00.123+09:00"]), pa.array(["2024-05-01 12:30:00.123000000Z"]),
        pa.array(["2024-05-01t12:30:00.123z"]), pa.array(["2024-05-01T12:30:00.123"]),
        pa.array(["2024-05-01T12:30:00.123"], pa.large_string()),
    ]
    conformer = Conformer(DATASET, {"x": Column(type="timestamp_tz")})
    for shape in shapes[:1] + shapes[2:]:
        out = conformer.conform(pa.table({"x": shape})).column(0).to_pylist()
        assert out == [at.replace(tzinfo=UTC)], shape
    assert conformer.conform(pa.table({"x": shapes[1]})).column(0)[0].as_py() == at.replace(
        tzinfo=UTC)


def test_numbers_from_every_numeric_shape() -> None:
    table = pa.table({
        "a": pa.array([1, 2], pa.uint8()), "b": pa.array([1.0, -2.0], pa.float32()),
        "c": pa.array([PyDecimal("1.00"), PyDecimal("-2")], pa.decimal256(40, 2)),
        "d": pa.array(["1", " -2 "]), "e": pa.array([1, -2], pa.int16()).cast(pa.float16()),
    })
    for type_text in ["int8", "int64", "decimal(3,0)", "decimal(60,30)", "float32", "bfloat16"]:
        columns = {n: Column(type=type_text) for n in "abcde"}
        out = to_python_friendly(Conformer(DATASET, columns).conform(table)).to_pydict()
        for name in "bcde":
            assert [float(v) for v in out[name]] == [1.0, -2.0], (type_text, name)
        assert [float(v) for v in out["a"]] == [1.0, 2.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-(10**30), 10**30), st.integers(0, 30)), min_size=1))
def test_floats_from_decimals_and_text_are_correctly_rounded(
    numbers: list[tuple[int, int]]
) -> None:
    values = [PyDecimal(f"{unscaled}E-{scale}") for unscaled, scale in numbers]
    table = pa.table({"d": pa.array(values, pa.decimal256(61, 30)),
                      "t": pa.array([str(v) for v in values])})
    for type_text, rounded in [("float64", float), ("float32", lambda v: f32(float(v)))]:
        columns = {"d": Column(type=type_text), "t": Column(type=type_text)}
        out = Conformer(DATASET, columns).conform(table).to_pydict()
        want = [rounded(v) for v in values]
        assert out == {"d": want, "t": want}, type_text


def test_dates_times_and_booleans_from_other_shapes() -> None:
    table = pa.table({
        "d": pa.array([86_400_000 * 19_000], pa.date64()),
        "t": pa.array([3_600_000], pa.time32("ms")),
        "b": pa.array([1], pa.uint8()),
    })
    columns = {"d": Column(type="date"), "t": Column(type="time"), "b": Column(type="bool")}
    out = Conformer(DATASET, columns).conform(table).to_pylist()
    assert out == [{"d": date(2022, 1, 8), "t": time(1), "b": True}]
    with pytest.raises(SchemaError, match="is not a date"):
        Conformer(DATASET, {"d": Column(type="date")}).conform(
            pa.table({"d": pa.array([1], pa.date64())}))
    with pytest.raises(SchemaError, match="finer than a microsecond"):
        Conformer(DATASET, {"t": Column(type="time")}).conform(
            pa.table({"t": pa.array([1], pa.time64("ns"))}))


def test_uuid_and_json_from_other_shapes() -> None:
    u = uuid.uuid4()
    table = pa.table({
        "u1": pa.array([u]),  # pyarrow's own uuid extension type
        "u2": pa.array([u.bytes], pa.binary(16)), "u3": pa.array([u.bytes], pa.large_binary()),
        "j1": pa.array([{"b": [1, None], "a": "é", "d": PyDecimal("1.50")}]),
        "j2": pa.array([[("k", datetime(2024, 1, 1))]], pa.map_(pa.string(), pa.timestamp("s"))),
        "j3": pa.array([[1.5, None]], pa.list_(pa.float64(), 2)),
        "s": pa.array([u]),
    })
    columns = {n: Column(type="uuid") for n in ("u1", "u2", "u3")}
    columns |= {n: Column(type="json") for n in ("j1", "j2", "j3")} | {"s": Column(type="string")}
    row = to_python_friendly(Conformer(DATASET, columns).conform(table)).to_pylist()[0]
    assert [row[n] for n in ("u1", "u2", "u3", "s")] == [str(u)] * 4
    assert row["j1"] == '{"b":[1,null],"a":"é","d":"1.50"}'
    assert row["j2"] == '{"k":"2024-01-01T00:00:00"}'
    assert row["j3"] == "[1.5,null]"


def test_map_from_a_list_of_key_value_structs_and_nested_nulls() -> None:
    entries = pa.list_(pa.struct([("value", pa.string()), ("key", pa.string())]))
    table = pa.table({"m": pa.array([[{"key": "a", "value": "1"}], None, []], entries),
                      "l": pa.array([[None, [1]], None, []], pa.large_list(pa.list_(pa.int8()))),
                      "s": pa.array([{"a": None}, None, {"a": [1]}]),
                      "f": pa.array([[1, 2], None, [3, None]], pa.list_(pa.int64(), 2)),
                      "v": pa.array([["1"], None, []], pa.list_view(pa.string()))})
    columns = {"m": Column(type="map<string,int16>"), "l": Column(type="list<list<int64>>"),
               "s": Column(type="struct<a:list<uint8>>"), "f": Column(type="list<int8>"),
               "v": Column(type="list<int8>")}
    out = Conformer(DATASET, columns).conform(table).to_pydict()
    assert out == {"m": [[("a", 1)], None, []], "l": [[None, [1]], None, []],
                   "s": [{"a": None}, None, {"a": [1]}], "f": [[1, 2], None, [3, None]],
                   "v": [[1], None, []]}


def test_sliced_arrays_ignore_values_outside_the_slice() -> None:
    table = pa.table({"l": pa.array([[999], [1], [2]], pa.list_(pa.int64())),
                      "s": pa.array(["bad", "1", "2"])}).slice(1)
    columns = {"l": Column(type="list<int8>"), "s": Column(type="int8")}
    assert Conformer(DATASET, columns).conform(table).to_pydict() == {"l": [[1], [2]],
                                                                       "s": [1, 2]}


def test_an_all_null_column_of_any_type_is_accepted() -> None:
    table = pa.table({"a": pa.nulls(2), "b": pa.array([None, None], pa.struct([("x",
                                                                                 pa.int8())]))})
    columns = {"a": Column(type="list<uuid>"), "b": Column(type="timestamp_tz")}
    out = Conformer(DATASET, columns).conform(table)
    assert out.to_pydict() == {"a": [None, None], "b": [None, None]}


def test_conforming_republished_store_data_keeps_the_bits() -> None:
    columns = {"f": Column(type="bfloat16"), "l": Column(type="list<float8_e4m3>"),
               "u": Column(type="uuid"), "h": Column(type="float16")}
    conformer = Conformer(DATASET, columns)
    first = conformer.conform(pa.table({"f": [math.nan, -0.0], "l": [[0.1], None],
                                        "u": [str(uuid.uuid4()), None], "h": [1.0, None]}))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_batches([first]), buffer)
    again = conformer.conform(pq.read_table(io.BytesIO(buffer.getvalue())))
    assert again.equals(first)
    # declared float32 from stored bfloat16 decodes the values
    decoded = Conformer(DATASET, {"f": Column(type="float32")}).conform(first.select(["f"]))
    assert math.isnan(decoded.column(0)[0].as_py())
    assert str(decoded.column(0)[1].as_py()) == "-0.0"


# --- streaming -----------------------------------------------------------------------


def test_conform_reader_is_lazy_and_streams_batch_by_batch() -> None:
    pulled: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for i in range(1000):
            pulled.append(i)
            yield pa.record_batch({"x": pa.array([str(i)] * 100), "junk": pa.array([i] * 100)})

    conformer = Conformer(DATASET, {"x": Column(type="int32")})
    reader = conformer.conform_reader(batches())
    assert pulled == []
    assert reader.schema.equals(conformer.schema, check_metadata=True)
    first = reader.read_next_batch()
    assert first.column(0)[0].as_py() == 0
    assert len(pulled) <= 2
    assert sum(b.num_rows for b in reader) == 999 * 100
    assert len(pulled) == 1000


def test_conform_reader_accepts_readers_and_tables() -> None:
    table = pa.table({"x": [1, 2, 3]})
    conformer = Conformer(DATASET, {"x": Column(type="int8")})
    assert conformer.conform_reader(table.to_reader(max_chunksize=1)).read_all().num_rows == 3
    assert conformer.conform_reader([table, table]).read_all().num_rows == 6


def test_to_python_friendly_keeps_tables_chunks_timestamps_and_decimals() -> None:
    columns = {"f": Column(type="float8_e5m2"), "at": Column(type="timestamp_tz"),
               "d": Column(type="decimal(40,2)"), "m": Column(type="map<uuid,json>")}
    conformer = Conformer(DATASET, columns)
    u = uuid.uuid4()
    data = pa.table({"f": [1.0], "at": ["2024-01-01T00:00:00Z"], "d": ["1.25"],
                     "m": pa.array([[(str(u), "[]")]], pa.map_(pa.string(), pa.string()))})
    table = pa.Table.from_batches([conformer.conform(data)] * 2)
    friendly = to_python_friendly(table)
    assert isinstance(friendly, pa.Table)
    assert friendly.column(0).num_chunks == 2
    assert friendly.schema.field("at").type == pa.timestamp("us", "UTC")
    assert friendly.schema.field("d").type == pa.decimal256(40, 2)
    assert friendly.schema.field("m").type == pa.map_(pa.string(), pa.string())
    assert friendly.to_pylist()[0]["m"] == [(str(u), "[]")]
    assert friendly.to_pylist()[0]["f"] == 1.0
    empty = to_python_friendly(table.slice(0, 0))
    assert empty.schema == friendly.schema


# --- other readers: deltalake, DuckDB, polars --------------------------------------

EVERY_TYPE = {
    "id": "int64", "i8": "int8", "i16": "int16", "i32": "int32", "u8": "uint8",
    "u16": "uint16", "u32": "uint32", "u64": "uint64", "f16": "float16", "bf16": "bfloat16",
    "e4m3": "float8_e4m3", "e5m2": "float8_e5m2", "f32": "float32", "f64": "float64",
    "dec": "decimal(38,9)", "dec76": "decimal(76,10)", "s": "string", "s5": "string(5)",
    "bin": "binary", "u": "uuid", "j": "json", "day": "date", "clock": "time",
    "at": "timestamp", "at_utc": "timestamp_tz", "flag": "bool", "tags": "list<string>",
    "attrs": "map<string,int32>", "addr": "struct<city:string, zip:string(10)>",
}
ROW = {
    "id": 1, "i8": -128, "i16": 32767, "i32": -(2**31), "u8": 255, "u16": 65535,
    "u32": 2**32 - 1, "u64": 2**64 - 1, "f16": -1.5, "bf16": -2.5, "e4m3": -448.0,
    "e5m2": -57344.0, "f32": f32(0.1), "f64": math.nan,
    "dec": PyDecimal("-99999999999999999999999999999.999999999"),
    "dec76": PyDecimal("-" + "9" * 66 + "." + "9" * 10), "s": "Zoë 😀 e\u0301", "s5": "ab😀dé",
    "bin": b"\x00\xff", "u": "123e4567-e89b-12d3-a456-426614174000", "j": '{"a": [1, "é"]}',
    "day": date(1, 1, 1), "clock": time(23, 59, 59, 999999),
    "at": datetime(9999, 12, 31, 23, 59, 59, 999999),
    "at_utc": datetime(1, 1, 1, tzinfo=UTC), "flag": True, "tags": ["a", None],
    "attrs": [("k", -1)], "addr": {"city": "Zürich", "zip": "8001"},
}
INPUT_TYPES = {"u64": pa.uint64(), "dec76": pa.decimal256(76, 10),
               "attrs": pa.map_(pa.string(), pa.int64())}


def every_type_batch(names: list[str]) -> pa.RecordBatch:
    columns = {n: Column(type=EVERY_TYPE[n]) for n in names}
    table = pa.table({n: pa.array([ROW[n], None], INPUT_TYPES.get(n)) for n in names})
    return Conformer(DATASET, columns, ["id"] if "id" in names else ()).conform(table)


def expected_rows(names: list[str]) -> list[dict[str, Any]]:
    return [{n: ROW[n] for n in names}, dict.fromkeys(names)]


def assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    for g, w in zip(got, want, strict=True):
        for name in w:
            assert equal(g[name], w[name]), (name, g[name], w[name])


DELTA_OK = ["id", "i8", "i16", "i32", "f32", "f64", "dec", "s", "s5", "bin", "j", "day", "at",
            "at_utc", "flag", "tags", "attrs", "addr"]


def test_deltalake_round_trip_of_the_types_it_supports(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    batch = every_type_batch([*DELTA_OK, "u"])
    write_deltalake(str(tmp_path), pa.Table.from_batches([batch]))
    back = DeltaTable(str(tmp_path)).to_pyarrow_table()
    assert back.schema.names == batch.schema.names
    for name in DELTA_OK:  # top-level field metadata survives, so declared types do too
        assert from_arrow_field(back.schema.field(name)) == parse_type(EVERY_TYPE[name]), name
    assert_rows(to_python_friendly(back).to_pylist(), expected_rows(DELTA_OK))
    # uuid: Delta has no fixed-size binary; the bytes survive but the storage type does not
    assert back.schema.field("u").type == pa.binary()
    assert back.column("u").to_pylist() == [uuid.UUID(ROW["u"]).bytes, None]
    with pytest.raises(ValueError, match="declared uuid but stored as binary"):
        from_arrow_field(back.schema.field("u"))


DELTA_UNSUPPORTED = [  # column, what deltalake says (write_deltalake raises it)
    ("u8", "Can't cast value 255 to type Int8"),  # Delta has no unsigned types
    ("u16", "Can't cast value 65535 to type Int16"),
    ("u32", "Can't cast value 4294967295 to type Int32"),
    ("u64", "Can't cast value 18446744073709551615 to type Int64"),
    ("bf16", "Can't cast value 49184 to type Int16"),  # stored as uint16 bits: negatives fail
    ("e4m3", "Can't cast value 254 to type Int8"),
    ("e5m2", "Can't cast value 251 to type Int8"),
    ("f16", "Invalid data type for Delta Lake: Float16"),
    ("dec76", "Invalid data type for Delta Lake: Decimal256"),
    ("clock", "Invalid data type for Delta Lake: Time64"),
]


@pytest.mark.parametrize(("name", "message"), DELTA_UNSUPPORTED,
                         ids=[n for n, _ in DELTA_UNSUPPORTED])
def test_deltalake_cannot_hold_these_types(tmp_path: Path, name: str, message: str) -> None:
    from deltalake import DeltaTable, write_deltalake

    table = pa.Table.from_batches([every_type_batch([name])])
    with pytest.raises(Exception, match=re.escape(message)):
        write_deltalake(str(tmp_path), table)
        DeltaTable(str(tmp_path)).to_pyarrow_table()


def test_deltalake_reads_unsigned_values_that_fit_as_signed_types(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    batch = Conformer(DATASET, {"u": Column(type="uint16")}).conform(pa.table({"u": [1]}))
    write_deltalake(str(tmp_path), pa.Table.from_batches([batch]))
    back = DeltaTable(str(tmp_path)).to_pyarrow_table()
    assert back.schema.field("u").type == pa.int16()  # declared uint16 comes back as int16
    assert back.column("u").to_pylist() == [1]


DUCKDB_DIFFERENT = {  # column -> what DuckDB's read_parquet gives instead of the value
    "bf16": 0xC020, "e4m3": 0xFE, "e5m2": 0xFB,  # the raw bits: no dataferry metadata
    "u": uuid.UUID(ROW["u"]).bytes,  # BLOB
}


def test_duckdb_read_parquet_round_trip(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_batches([every_type_batch(list(EVERY_TYPE))]), path,
                   compression="zstd")
    got = duckdb.sql(f"select * from read_parquet('{path}')").to_arrow_table()
    names = [n for n in EVERY_TYPE if n != "dec76"]
    want = expected_rows(names)
    want[0] |= DUCKDB_DIFFERENT
    assert_rows(got.select(names).to_pylist(), want)
    assert got.schema.field("f16").type == pa.float32()  # float16 is read as FLOAT
    assert got.schema.field("at_utc").type == pa.timestamp("us", "Etc/UTC")
    # DuckDB decimals stop at 38 digits: wider ones are read as DOUBLE, silently lossy
    # (here not even the double nearest to the decimal)
    assert got.schema.field("dec76").type == pa.float64()
    wide = got.column("dec76")[0].as_py()
    assert wide != float(ROW["dec76"]) and math.isclose(wide, float(ROW["dec76"]))


def test_polars_read_parquet_round_trip(tmp_path: Path) -> None:
    import polars as pl

    names = [n for n in EVERY_TYPE if n != "dec76"]
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_batches([every_type_batch(names)]), path, compression="zstd")
    frame = pl.read_parquet(path)
    assert frame.schema["f16"] == pl.Float16 if hasattr(pl, "Float16") else True
    want = expected_rows(names)
    want[0] |= {n: v for n, v in DUCKDB_DIFFERENT.items() if n in names}
    assert_rows(frame.to_arrow().to_pylist(), want)
    # decimals wider than 38 digits are not readable at all
    wide = tmp_path / "wide.parquet"
    pq.write_table(pa.Table.from_batches([every_type_batch(["dec76"])]), wide)
    with pytest.raises(Exception, match="precision must be between 1 and 38, got 76"):
        pl.read_parquet(wide)


def test_integer_booleans_keep_their_nulls() -> None:
    batch = Conformer(DATASET, {"b": Column(type="bool")}).conform(
        pa.table({"b": pa.array([1, None, 0], pa.int64())}))
    assert batch.column(0).to_pylist() == [True, None, False]
