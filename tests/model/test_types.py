"""Column types: parse/format, Arrow and Parquet round trips, widening rules."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import struct
from collections.abc import Callable
from decimal import Decimal as Dec
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.model.types import (
    MAX_DEPTH,
    MAX_STRING_LENGTH,
    METADATA_KEY,
    PRIMITIVE_NAMES,
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    TypeParseError,
    UnsupportedArrowTypeError,
    describe_change,
    family,
    format_type,
    from_arrow_field,
    is_widening,
    parse_type,
    to_arrow,
    to_arrow_field,
)

# --- strategies ----------------------------------------------------------------------

primitives = st.sampled_from(sorted(PRIMITIVE_NAMES)).map(Primitive)
decimals = st.integers(1, 76).flatmap(lambda p: st.integers(0, p).map(lambda s: Decimal(p, s)))
strings = st.one_of(st.integers(1, 300), st.just(MAX_STRING_LENGTH)).map(String)
key_types: st.SearchStrategy[DataType] = st.one_of(primitives, decimals, strings)
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


def data_types(depth: int = 3) -> st.SearchStrategy[DataType]:
    """Any type, nested at most ``depth`` levels."""
    if depth == 0:
        return key_types
    inner = data_types(depth - 1)
    fields = st.lists(
        st.tuples(field_names, inner), min_size=1, max_size=4, unique_by=lambda f: f[0].lower()
    )
    return st.one_of(
        key_types,
        inner.map(ListType),
        st.builds(MapType, key_types, inner),
        fields.map(lambda fs: StructType(tuple(fs))),
    )


def messy(t: DataType, draw: Callable[[st.SearchStrategy[str]], str]) -> str:
    """Another accepted spelling of ``t``: random whitespace and keyword case."""

    def ws() -> str:
        return draw(st.sampled_from(["", "", " ", "  ", "\t", "\n "]))

    def kw(word: str) -> str:
        return draw(st.sampled_from([word, word.upper(), word.title()]))

    match t:
        case Primitive(name):
            return kw(name)
        case Decimal(p, s):
            return f"{kw('decimal')}{ws()}({ws()}{p}{ws()},{ws()}{s}{ws()})"
        case String(n):
            return f"{kw('string')}{ws()}({ws()}{n}{ws()})"
        case ListType(item):
            return f"{kw('list')}{ws()}<{ws()}{messy(item, draw)}{ws()}>"
        case MapType(k, v):
            return f"{kw('map')}<{ws()}{messy(k, draw)}{ws()},{ws()}{messy(v, draw)}{ws()}>"
        case StructType(fields):
            inner = ",".join(f"{ws()}{n}{ws()}:{ws()}{messy(f, draw)}{ws()}" for n, f in fields)
            return f"{kw('struct')}{ws()}<{inner}>"
    raise AssertionError(t)


# --- parse and format ----------------------------------------------------------------


@given(data_types())
def test_format_then_parse_round_trips(t: DataType) -> None:
    text = format_type(t)
    assert parse_type(text) == t
    assert str(t) == text


@given(st.data())
def test_any_accepted_spelling_normalizes(data: st.DataObject) -> None:
    t = data.draw(data_types())
    spelled = messy(t, data.draw)
    assert parse_type(spelled) == t
    assert format_type(parse_type(spelled)) == format_type(t)


grammar_soup = st.text(alphabet="()<>,: \tabcdeilmnprstuxgfoz_0123456789", max_size=40)


@given(st.one_of(st.text(max_size=60), grammar_soup))
def test_parse_raises_only_type_parse_error(text: str) -> None:
    try:
        t = parse_type(text)
    except TypeParseError as error:
        assert 0 <= error.position <= len(text)
        assert f"column {error.position + 1}" in str(error)
    else:
        assert parse_type(format_type(t)) == t


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int64", Primitive("int64")),
        (" INT64 ", Primitive("int64")),
        ("Float8_E4M3", Primitive("float8_e4m3")),
        ("decimal( 12 , 2 )", Decimal(12, 2)),
        ("decimal(76,76)", Decimal(76, 76)),
        ("string(2)", String(2)),
        ("list<string>", ListType(Primitive("string"))),
        ("map<string(3), list<int8>>", MapType(String(3), ListType(Primitive("int8")))),
        ("map<decimal(5,2),json>", MapType(Decimal(5, 2), Primitive("json"))),
        (
            "struct<Name:string, map:map<uuid,bool>>",
            StructType((("Name", Primitive("string")), ("map", MapType(Primitive("uuid"), Primitive("bool"))))),
        ),
    ],
)  # fmt: skip
def test_parse_examples(text: str, expected: DataType) -> None:
    assert parse_type(text) == expected


def test_canonical_spelling() -> None:
    text = " STRUCT < a : INT64 ,b:List<String>, c : MAP<string ,Decimal(12, 2)> > "
    assert format_type(parse_type(text)) == (
        "struct<a:int64, b:list<string>, c:map<string,decimal(12,2)>>"
    )


@pytest.mark.parametrize(
    ("text", "problem", "column"),
    [
        ("", "expected a type name, got end of input", 1),
        ("decimal", "expected '(' after decimal", 8),
        ("decimal(0,0)", "decimal precision must be 1..76, got 0", 9),
        ("decimal(77,2)", "decimal precision must be 1..76, got 77", 9),
        ("decimal(5,6)", "decimal scale must be 0..5, got 6", 11),
        ("decimal(5)", "expected ',' between decimal precision and scale, got ')'", 10),
        ("string(0)", "string length must be 1..2147483647, got 0", 8),
        ("string(2147483648)", "string length must be 1..2147483647", 8),
        ("string(1" + "0" * 30 + ")", "string length must be", 8),
        ("list<int64", "expected '>' to close list<, got end of input", 11),
        ("list<>", "expected a type name, got '>'", 6),
        ("map<list<int8>,int8>", "map key must be a primitive, decimal or string(n)", 5),
        ("map<string>", "expected ',' between map key and value types, got '>'", 11),
        ("struct<>", "expected a struct field name, got '>'", 8),
        ("struct<a:int8, A:int8>", "duplicate struct field name 'A'", 16),
        ("struct<1a:int8>", "expected a struct field name, got '1'", 8),
        ("struct<a int8>", "expected ':' after struct field name 'a', got 'int8'", 10),
        ("struct<a:int8;", "unexpected character ';'", 14),
        ("int64(3)", "int64 takes no parameters", 6),
        ("int64 int64", "expected end of input, got 'int64'", 7),
        ("int64é", "unexpected character 'é'", 6),
    ],
)
def test_error_messages_say_what_and_where(text: str, problem: str, column: int) -> None:
    with pytest.raises(TypeParseError) as caught:
        parse_type(text)
    error = caught.value
    assert problem in error.problem
    assert error.position == column - 1
    assert str(error).startswith(f"invalid type {text!r}: ")
    assert f"at column {column}" in str(error)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("intt64", "int64"),
        ("in64", "int64"),
        ("stirng", "string"),
        ("lst<int64>", "list<int64>"),
        ("varchar", "string"),
        ("TEXT", "string"),
        ("varchar(255)", "string(255)"),
        ("char(2)", "string(2)"),
        ("integer", "int32"),
        ("int", "int32"),
        ("bigint", "int64"),
        ("smallint", "int16"),
        ("double", "float64"),
        ("double precision", "float64"),
        ("float", "float32"),
        ("real", "float32"),
        ("boolean", "bool"),
        ("timestamptz", "timestamp_tz"),
        ("timestamp with time zone", "timestamp_tz"),
        ("datetime", "timestamp"),
        ("numeric", "decimal(p,s)"),
        ("numeric(10,2)", "decimal(10,2)"),
        ("bytea", "binary"),
        ("blob", "binary"),
        ("jsonb", "json"),
        ("duration", "interval"),
        ("array<bigint>", "list<int64>"),
        ("array", "list<T>"),
        ("map<varchar(3), numeric(9,2)>", "map<string(3),decimal(9,2)>"),
        ("struct<id:bigint, tags:array<text>>", "struct<id:int64, tags:list<string>>"),
        ("zzzzzz", None),
        ("list<int64", None),
    ],
)
def test_suggestions(text: str, suggestion: str | None) -> None:
    with pytest.raises(TypeParseError) as caught:
        parse_type(text)
    assert caught.value.suggestion == suggestion
    if suggestion:
        assert str(caught.value).endswith(f"; did you mean {suggestion!r}?")


def test_parse_error_survives_pickling() -> None:
    with pytest.raises(TypeParseError) as caught:
        parse_type("varchar(3)")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.text, copy.position, copy.suggestion) == ("varchar(3)", 0, "string(3)")
    assert str(copy) == str(caught.value)


def test_aliases_are_never_accepted() -> None:
    for alias in ["varchar", "integer", "bigint", "double", "boolean", "jsonb", "array<int8>"]:
        with pytest.raises(TypeParseError):
            parse_type(alias)


def test_nesting_depth_is_limited() -> None:
    def nested(depth: int) -> str:
        return "list<" * depth + "int8" + ">" * depth

    assert parse_type(nested(MAX_DEPTH)) is not None
    with pytest.raises(TypeParseError, match="nest deeper"):
        parse_type(nested(MAX_DEPTH + 1))
    with pytest.raises(TypeParseError):
        parse_type(nested(5000))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Primitive("int"),
        lambda: Decimal(0, 0),
        lambda: Decimal(77, 0),
        lambda: Decimal(5, 6),
        lambda: Decimal(5, -1),
        lambda: String(0),
        lambda: MapType(ListType(Primitive("int8")), Primitive("int8")),
        lambda: StructType(()),
        lambda: StructType((("a b", Primitive("int8")),)),
        lambda: StructType((("a", Primitive("int8")), ("A", Primitive("int8")))),
    ],
)
def test_constructors_validate(build: Callable[[], DataType]) -> None:
    with pytest.raises(ValueError):
        build()


# --- Arrow and Parquet ---------------------------------------------------------------


@given(data_types(), st.booleans())
def test_arrow_field_round_trips(t: DataType, nullable: bool) -> None:
    field = to_arrow_field("c", t, nullable)
    assert field.nullable is nullable
    assert field.type == to_arrow(t)
    assert from_arrow_field(field) == t


@settings(max_examples=40, deadline=None)
@given(st.lists(data_types(2), min_size=1, max_size=5))
def test_parquet_schema_round_trips(tmp_path_factory: pytest.TempPathFactory, ts: list[DataType]) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("pq") / "t.parquet"
    schema = pa.schema([to_arrow_field(f"c{i}", t) for i, t in enumerate(ts)])
    pq.write_table(schema.empty_table(), path)
    read = pq.read_schema(path)
    assert [from_arrow_field(f) for f in read] == ts


@pytest.mark.parametrize(
    ("text", "arrow_type", "tagged"),
    [
        ("bool", pa.bool_(), False),
        ("uint16", pa.uint16(), False),
        ("float16", pa.float16(), False),
        ("bfloat16", pa.uint16(), True),
        ("float8_e4m3", pa.uint8(), True),
        ("float8_e5m2", pa.uint8(), True),
        ("decimal(38,2)", pa.decimal128(38, 2), False),
        ("decimal(39,2)", pa.decimal256(39, 2), False),
        ("string", pa.string(), False),
        ("string(2)", pa.string(), True),
        ("json", pa.string(), True),
        ("interval", pa.string(), True),
        ("list<interval>", pa.list_(pa.string()), True),
        ("uuid", pa.binary(16), True),
        ("binary", pa.binary(), False),
        ("date", pa.date32(), False),
        ("time", pa.time64("us"), False),
        ("timestamp", pa.timestamp("us"), False),
        ("timestamp_tz", pa.timestamp("us", tz="UTC"), False),
        ("list<int8>", pa.list_(pa.int8()), False),
        ("list<json>", pa.list_(pa.string()), True),
        ("map<string,int64>", pa.map_(pa.string(), pa.int64()), False),
        ("struct<a:int64, b:list<string>>", pa.struct({"a": pa.int64(), "b": pa.list_(pa.string())}), False),
        ("struct<a:int64, b:bfloat16>", pa.struct({"a": pa.int64(), "b": pa.uint16()}), True),
    ],
)  # fmt: skip
def test_arrow_mapping(text: str, arrow_type: pa.DataType, tagged: bool) -> None:
    field = to_arrow_field("c", parse_type(text))
    assert field.type == arrow_type
    expected = {METADATA_KEY.encode(): text.encode()} if tagged else None
    assert field.metadata == expected


def test_nested_fields_are_nullable_and_tagged() -> None:
    t = parse_type("struct<a:bfloat16, b:map<uuid,list<string(4)>>>")
    arrow = to_arrow(t)
    a, b = arrow.field("a"), arrow.field("b")
    assert a.nullable and b.nullable
    assert a.metadata == {b"dataferry.type": b"bfloat16"}
    assert b.type.key_field.metadata == {b"dataferry.type": b"uuid"}
    assert not b.type.key_field.nullable
    assert b.type.item_field.type.value_field.metadata == {b"dataferry.type": b"string(4)"}


@pytest.mark.parametrize(
    ("arrow_type", "text"),
    [
        (pa.large_string(), "string"),
        (pa.string_view(), "string"),
        (pa.large_binary(), "binary"),
        (pa.binary(7), "binary"),
        (pa.date64(), "date"),
        (pa.time32("s"), "time"),
        (pa.timestamp("ns"), "timestamp"),
        (pa.timestamp("ms", tz="Europe/Berlin"), "timestamp_tz"),
        (pa.decimal64(9, 2), "decimal(9,2)"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.large_list(pa.int8()), "list<int8>"),
        (pa.list_(pa.int8(), 3), "list<int8>"),
        (pa.uuid(), "uuid"),
        (pa.json_(), "json"),
        (pa.duration("ms"), "interval"),
        (pa.month_day_nano_interval(), "interval"),
    ],
)
def test_foreign_arrow_types_map_to_nearest(arrow_type: pa.DataType, text: str) -> None:
    assert from_arrow_field(pa.field("c", arrow_type)) == parse_type(text)


def test_dictionary_encoded_tagged_field_keeps_declared_type() -> None:
    field = pa.field(
        "c", pa.dictionary(pa.int32(), pa.string()), metadata={METADATA_KEY: "string(4)"}
    )
    assert from_arrow_field(field) == String(4)


@pytest.mark.parametrize(
    "field",
    [
        pa.field("c", pa.null()),
        pa.field("c", pa.struct({"first name": pa.int8()})),
        pa.field("c", pa.decimal128(5, -2)),
        pa.field("c", pa.uint8(), metadata={METADATA_KEY: "bfloat16"}),
        pa.field("c", pa.uint16(), metadata={METADATA_KEY: "varchar"}),
    ],
)
def test_unsupported_arrow_fields(field: pa.Field) -> None:
    with pytest.raises(UnsupportedArrowTypeError, match=r"'c'|no dataferry type"):
        from_arrow_field(field)


def test_parquet_round_trip_keeps_declared_types_and_bits(tmp_path: Path) -> None:
    columns: dict[str, tuple[str, list[object]]] = {
        "flag": ("bool", [True, None]),
        "i8": ("int8", [-128, 127]),
        "u64": ("uint64", [0, 2**64 - 1]),
        "half": ("float16", [1.5, None]),
        "brain": ("bfloat16", [0x3F80, 0x7FC1]),  # raw bits: 1.0 and a NaN with payload
        "e4m3": ("float8_e4m3", [0x7F, 0x01]),
        "e5m2": ("float8_e5m2", [0x7C, 0xFF]),
        "f32": ("float32", [0.5, -0.0]),
        "f64": ("float64", [1e300, None]),
        "money": ("decimal(12,2)", [Dec("-1234567890.12"), None]),
        "big": (
            "decimal(60,10)",
            [Dec("12345678901234567890123456789012345678901234567890.1"), None],
        ),
        "text": ("string", ["héllo", None]),
        "code": ("string(2)", ["NZ", "AU"]),
        "blob": ("binary", [b"\x00\xff", None]),
        "day": ("date", [dt.date(2024, 2, 29), None]),
        "clock": ("time", [dt.time(23, 59, 59, 999999), None]),
        "at": ("timestamp", [dt.datetime(1900, 1, 1, 0, 0, 0, 1), None]),
        "at_tz": ("timestamp_tz", [dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=dt.UTC), None]),
        "id": ("uuid", [bytes(range(16)), None]),
        "doc": ("json", ['{"a": 1}', None]),
        "span": ("interval", ["P1Y2M-3DT4H5M6.5S", None]),
        "tags": ("list<string(8)>", [["a", "b"], []]),
        "scores": ("map<string,bfloat16>", [[("x", 0x4000)], None]),
        "nested": ("struct<a:float8_e5m2, b:list<uuid>>", [{"a": 0x3C, "b": [bytes(16)]}, None]),
    }
    fields = [to_arrow_field(name, parse_type(text)) for name, (text, _) in columns.items()]
    table = pa.Table.from_arrays(
        [pa.array(values, f.type) for f, (_, values) in zip(fields, columns.values(), strict=True)],
        schema=pa.schema(fields),
    )
    pq.write_table(table, tmp_path / "all.parquet")
    read = pq.read_table(tmp_path / "all.parquet")

    assert {f.name: format_type(from_arrow_field(f)) for f in read.schema} == {
        name: format_type(parse_type(text)) for name, (text, _) in columns.items()
    }
    for name, (_, values) in columns.items():
        assert read.column(name).to_pylist() == values, name


# --- widening ------------------------------------------------------------------------

WIDENING = [
    ("int8", "int16"), ("int16", "int32"), ("int32", "int64"), ("int8", "int64"),
    ("uint8", "uint16"), ("uint16", "uint32"), ("uint32", "uint64"),
    ("uint8", "int16"), ("uint16", "int32"), ("uint32", "int64"), ("uint8", "int64"),
    ("int8", "decimal(3,0)"), ("int16", "decimal(5,0)"), ("int32", "decimal(10,0)"),
    ("int64", "decimal(19,0)"), ("int64", "decimal(21,2)"), ("uint8", "decimal(3,0)"),
    ("uint64", "decimal(20,0)"), ("uint32", "decimal(12,2)"),
    ("float16", "float32"), ("float16", "float64"), ("bfloat16", "float32"),
    ("bfloat16", "float64"), ("float32", "float64"), ("float8_e4m3", "float16"),
    ("float8_e5m2", "float16"), ("float8_e4m3", "bfloat16"), ("float8_e5m2", "bfloat16"),
    ("float8_e4m3", "float32"), ("float8_e5m2", "float64"),
    ("decimal(10,2)", "decimal(12,2)"), ("decimal(10,2)", "decimal(12,4)"),
    ("decimal(18,2)", "decimal(40,2)"), ("decimal(1,0)", "decimal(76,75)"),
    ("string(10)", "string(100)"), ("string(10)", "string"),
    ("list<int32>", "list<int64>"), ("list<string(5)>", "list<string>"),
    ("list<list<int8>>", "list<list<decimal(4,1)>>"),
    ("map<int32,string(3)>", "map<int64,string>"), ("map<string,float32>", "map<string,float64>"),
    ("struct<a:int32>", "struct<a:int64, b:string>"),
    ("struct<a:int8, b:bool>", "struct<b:bool, a:int16>"),
    ("struct<a:list<int8>>", "struct<a:list<int16>>"),
    ("list<struct<a:int8>>", "list<struct<a:int16, b:bool>>"),
    ("map<string,struct<x:string(2)>>", "map<string,struct<x:string(3), y:json>>"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new"), WIDENING)
def test_widening_is_allowed_and_its_reverse_is_not(old: str, new: str) -> None:
    old_t, new_t = parse_type(old), parse_type(new)
    assert is_widening(old_t, new_t)
    assert describe_change(old_t, new_t) is None
    assert not is_widening(new_t, old_t)
    assert describe_change(new_t, old_t)


NEITHER_WAY = [
    ("int32", "uint32"), ("int64", "uint64"), ("int8", "uint64"),
    ("float16", "bfloat16"), ("float8_e4m3", "float8_e5m2"),
    ("decimal(10,2)", "decimal(10,4)"), ("int32", "float64"), ("int8", "float16"),
    ("int64", "string"), ("string", "json"), ("string", "binary"), ("uuid", "binary"),
    ("timestamp", "timestamp_tz"), ("date", "timestamp"), ("time", "timestamp"),
    ("bool", "int8"), ("list<int8>", "int8"), ("list<int8>", "map<int8,int8>"),
    ("struct<a:int8>", "struct<b:int8>"), ("struct<a:int8>", "struct<A:int8>"),
    ("map<int8,int8>", "struct<key:int8, value:int8>"),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b"), NEITHER_WAY)
def test_incompatible_either_way(a: str, b: str) -> None:
    a_t, b_t = parse_type(a), parse_type(b)
    assert not is_widening(a_t, b_t)
    assert not is_widening(b_t, a_t)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("int64", "int32", "narrowing int64 -> int32"),
        ("float64", "float32", "narrowing float64 -> float32"),
        ("string(100)", "string(10)", "narrowing string(100) -> string(10)"),
        ("string", "string(10)", "narrowing string -> string(10)"),
        ("decimal(18,2)", "decimal(10,2)", "narrowing decimal(18,2) -> decimal(10,2): integer digits 16 -> 8"),
        ("decimal(10,4)", "decimal(10,2)", "narrowing decimal(10,4) -> decimal(10,2): scale 4 -> 2 drops fractional digits"),
        ("int64", "decimal(18,0)", "narrowing int64 -> decimal(18,0): needs 19 integer digits, has 18"),
        ("uint32", "int32", "uint32 -> int32 cannot hold every uint32 value exactly"),
        ("float16", "bfloat16", "float16 -> bfloat16 cannot hold every float16 value exactly"),
        ("int64", "string", "type family changed from integer to string (int64 -> string)"),
        ("decimal(10,0)", "int64", "type family changed from decimal to integer (decimal(10,0) -> int64)"),
        ("list<int64>", "list<int32>", "list item: narrowing int64 -> int32"),
        ("map<int64,string>", "map<int32,string>", "map key: narrowing int64 -> int32"),
        ("map<string,int64>", "map<string,int32>", "map value: narrowing int64 -> int32"),
        ("struct<a:int8, b:bool>", "struct<a:int8>", "struct field 'b' removed"),
        ("struct<a:list<int64>>", "struct<a:list<int32>>", "struct field 'a': list item: narrowing int64 -> int32"),
        ("list<int8>", "map<int8,int8>", "type family changed from list to map (list<int8> -> map<int8,int8>)"),
    ],
)  # fmt: skip
def test_describe_change(old: str, new: str, reason: str) -> None:
    assert describe_change(parse_type(old), parse_type(new)) == reason


@given(data_types(2), data_types(2))
def test_describe_change_agrees_with_is_widening(a: DataType, b: DataType) -> None:
    assert is_widening(a, a)
    assert (describe_change(a, b) is None) == is_widening(a, b)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int8", "integer"), ("uint64", "integer"), ("bfloat16", "float"), ("float8_e5m2", "float"),
        ("float64", "float"), ("decimal(5,2)", "decimal"), ("string", "string"),
        ("string(3)", "string"), ("binary", "binary"), ("bool", "bool"), ("date", "date"),
        ("time", "time"), ("timestamp", "timestamp"), ("timestamp_tz", "timestamp_tz"),
        ("uuid", "uuid"), ("json", "json"), ("list<int8>", "list"), ("map<int8,int8>", "map"),
        ("struct<a:int8>", "struct"),
    ],
)  # fmt: skip
def test_family(text: str, expected: str) -> None:
    assert family(parse_type(text)) == expected


# Every bit pattern of the small float formats, decoded to a Python float.


def _decode(bits: int, exponent_bits: int, mantissa_bits: int, fn: bool = False) -> float:
    sign = -1.0 if bits >> (exponent_bits + mantissa_bits) else 1.0
    exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = bits & ((1 << mantissa_bits) - 1)
    bias, top = (1 << (exponent_bits - 1)) - 1, (1 << exponent_bits) - 1
    if fn and exponent == top and mantissa == (1 << mantissa_bits) - 1:
        return math.nan  # E4M3FN: no infinities, one NaN pattern per sign
    if not fn and exponent == top:
        return math.nan if mantissa else sign * math.inf
    if exponent == 0:
        return sign * mantissa * 2.0 ** (1 - bias - mantissa_bits)
    return sign * (1 + mantissa / (1 << mantissa_bits)) * 2.0 ** (exponent - bias)


SMALL_FLOATS = {
    "float8_e4m3": [_decode(b, 4, 3, fn=True) for b in range(256)],
    "float8_e5m2": [_decode(b, 5, 2) for b in range(256)],
    "float16": [_decode(b, 5, 10) for b in range(1 << 16)],
    "bfloat16": [_decode(b, 8, 7) for b in range(1 << 16)],
}

_VALUE_SETS = {name: set(values) for name, values in SMALL_FLOATS.items()}


def _fits(value: float, target: str) -> bool:
    if math.isnan(value):
        return True  # every float format has a NaN
    if target in SMALL_FLOATS:
        return value in _VALUE_SETS[target]
    if target == "float64":
        return True
    try:
        return bool(struct.unpack("<f", struct.pack("<f", value))[0] == value)
    except OverflowError:
        return False


def test_decoders_agree_with_struct() -> None:
    for bits in range(0, 1 << 16, 97):
        (half,) = struct.unpack("<e", bits.to_bytes(2, "little"))
        (single,) = struct.unpack("<f", (bits << 16).to_bytes(4, "little"))
        assert _same(SMALL_FLOATS["float16"][bits], half)
        assert _same(SMALL_FLOATS["bfloat16"][bits], single)
    assert max(v for v in SMALL_FLOATS["float8_e4m3"] if math.isfinite(v)) == 448


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("old", sorted(SMALL_FLOATS))
@pytest.mark.parametrize("new", [*sorted(SMALL_FLOATS), "float32", "float64"])
def test_float_widening_is_exactly_the_exact_conversions(old: str, new: str) -> None:
    exact = all(_fits(v, new) for v in SMALL_FLOATS[old])
    assert is_widening(Primitive(old), Primitive(new)) == exact
