"""Column types of the model: parse, print, map to Arrow, compare for compatibility.

Canonical text (``format_type`` and ``str(t)``): lower-case keywords and no spaces, except
one space after each comma between struct fields: ``decimal(12,2)``, ``string(10)``,
``list<string>``, ``map<string,int64>``, ``struct<a:int64, b:list<string>>``.

``float8_e4m3`` is OCP FP8 E4M3FN (finite, max 448, NaN) and ``float8_e5m2`` the
IEEE-like E5M2; both, and ``bfloat16``, are stored as their raw bits in unsigned integers.
``interval`` is a calendar duration (months, days and microseconds, as PostgreSQL's and
DuckDB's INTERVAL), kept as ISO 8601 text (``P1Y2M-3DT4H5M6.5S``): Parquet and Delta Lake
have no type for Arrow's month_day_nano intervals.
"""

from __future__ import annotations

import difflib
import functools
import string as _chars
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, assert_never, cast

import pyarrow as pa

METADATA_KEY = "dataferry.type"
MAX_DECIMAL_PRECISION = 76
MAX_STRING_LENGTH = 2**31 - 1
MAX_DEPTH = 32

_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"int{b}": (-(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (8, 16, 32, 64)},
    **{f"uint{b}": (0, (1 << b) - 1) for b in (8, 16, 32, 64)},
}
_FLOATS = ("float8_e4m3", "float8_e5m2", "float16", "bfloat16", "float32", "float64")
_FAMILIES = (
    dict.fromkeys(_INT_RANGES, "integer")
    | dict.fromkeys(_FLOATS, "float")
    | {n: n for n in ("bool", "string", "binary", "date", "time", "timestamp", "timestamp_tz")}
    | {"uuid": "uuid", "json": "json", "interval": "interval"}
)
PRIMITIVE_NAMES = frozenset(_FAMILIES)


class _Type:
    __slots__ = ()

    def __str__(self) -> str:
        """The canonical text, as ``format_type`` prints it."""
        return format_type(cast("DataType", self))


@dataclass(frozen=True, slots=True)
class Primitive(_Type):
    """A type without parameters: ``int64``, ``bfloat16``, ``string``, ``timestamp_tz``..."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in PRIMITIVE_NAMES:
            raise ValueError(f"unknown primitive type {self.name!r}")


@dataclass(frozen=True, slots=True)
class Decimal(_Type):
    """``decimal(precision,scale)``: 1 <= precision <= 76, 0 <= scale <= precision."""

    precision: int
    scale: int

    def __post_init__(self) -> None:
        if not 1 <= self.precision <= MAX_DECIMAL_PRECISION:
            raise ValueError(f"decimal precision must be 1..76, got {self.precision}")
        if not 0 <= self.scale <= self.precision:
            raise ValueError(f"decimal scale must be 0..{self.precision}, got {self.scale}")


@dataclass(frozen=True, slots=True)
class String(_Type):
    """``string(n)``: a string of at most ``length`` characters (1 <= length < 2**31)."""

    length: int

    def __post_init__(self) -> None:
        if not 1 <= self.length <= MAX_STRING_LENGTH:
            raise ValueError(f"string length must be 1..{MAX_STRING_LENGTH}, got {self.length}")


@dataclass(frozen=True, slots=True)
class ListType(_Type):
    """``list<item>``."""

    item: DataType


@dataclass(frozen=True, slots=True)
class MapType(_Type):
    """``map<key,value>``; the key is a primitive, decimal or string(n) type."""

    key: DataType
    value: DataType

    def __post_init__(self) -> None:
        if not isinstance(self.key, Primitive | Decimal | String):
            raise ValueError(f"a map key must be a primitive, decimal or string(n), not {self.key}")


@dataclass(frozen=True, slots=True)
class StructType(_Type):
    """``struct<name:T, ...>``: >= 1 field, names ``[A-Za-z_][A-Za-z0-9_]*``.

    Names must be unique ignoring case, because several sinks fold the case of names.
    """

    fields: tuple[tuple[str, DataType], ...]

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("a struct needs at least one field")
        seen: set[str] = set()
        for name, _ in self.fields:
            if not _is_name(name):
                raise ValueError(f"invalid struct field name {name!r}")
            if name.lower() in seen:
                raise ValueError(f"duplicate struct field name {name!r}")
            seen.add(name.lower())


DataType: TypeAlias = Primitive | Decimal | String | ListType | MapType | StructType

_NAME_START = frozenset(_chars.ascii_letters + "_")
_NAME_CHARS = _NAME_START | frozenset(_chars.digits)


def _is_name(text: str) -> bool:
    return bool(text) and text[0] in _NAME_START and all(c in _NAME_CHARS for c in text)


def format_type(t: DataType) -> str:
    """Return the canonical text of ``t``; ``parse_type(format_type(t)) == t`` always."""
    match t:
        case Primitive(name):
            return name
        case Decimal(precision, scale):
            return f"decimal({precision},{scale})"
        case String(length):
            return f"string({length})"
        case ListType(item):
            return f"list<{format_type(item)}>"
        case MapType(key, value):
            return f"map<{format_type(key)},{format_type(value)}>"
        case StructType(fields):
            return "struct<" + ", ".join(f"{n}:{format_type(f)}" for n, f in fields) + ">"
        case _:
            assert_never(t)


# --- parsing -------------------------------------------------------------------------

# Common names from SQL and other systems: never accepted, only suggested.
_ALIASES = {
    **dict.fromkeys(["varchar", "text", "char", "character", "nvarchar", "str", "utf8"], "string"),
    **dict.fromkeys(["int", "integer", "int4"], "int32"),
    **{"bigint": "int64", "long": "int64", "smallint": "int16", "int2": "int16"},
    **{"tinyint": "int8", "double": "float64", "float8": "float64", "float": "float32"},
    **{"real": "float32", "float4": "float32", "half": "float16", "boolean": "bool"},
    **{"timestamptz": "timestamp_tz", "datetime": "timestamp", "timestamp_ntz": "timestamp"},
    **{"numeric": "decimal", "number": "decimal", "bytea": "binary", "blob": "binary"},
    **{"bytes": "binary", "varbinary": "binary", "jsonb": "json", "array": "list"},
    **{"guid": "uuid", "uniqueidentifier": "uuid", "duration": "interval"},
}
_PHRASES = {
    "timestamp with time zone": "timestamp_tz",
    "timestamp without time zone": "timestamp",
    "double precision": "float64",
    "character varying": "string",
}
_TEMPLATES = {"decimal": "decimal(p,s)", "list": "list<T>", "map": "map<K,V>"}
_KEYWORDS = sorted(PRIMITIVE_NAMES | {"decimal", "list", "map", "struct"})


class TypeParseError(ValueError):
    """``text`` is not a valid type.

    ``position`` is the 0-based offset of the problem in ``text`` (the message says
    ``column position + 1``); ``suggestion`` is a corrected type or a known type name
    (``intt64`` -> ``int64``, ``varchar(10)`` -> ``string(10)``), or None.
    """

    def __init__(self, text: str, position: int, problem: str, suggestion: str | None) -> None:
        self.text, self.position, self.problem = text, position, problem
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"invalid type {text!r}: {problem} at column {position + 1}{hint}")

    def __reduce__(self) -> tuple[type[TypeParseError], tuple[str, int, str, str | None]]:
        # Errors cross process boundaries (the Python DSL is checked in a subprocess).
        return type(self), (self.text, self.position, self.problem, self.suggestion)


class _Error(Exception):
    def __init__(self, pos: int, problem: str, fix: tuple[int, int, str] | None = None):
        self.pos, self.problem, self.fix = pos, problem, fix


class _Token(NamedTuple):
    text: str  # "" at the end of the input
    pos: int

    def describe(self) -> str:
        return repr(self.text) if self.text else "end of input"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        start, c = i, text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c in "()<>,:":
            i += 1
        elif c in _NAME_CHARS:
            chars = _NAME_CHARS if c in _NAME_START else frozenset(_chars.digits)
            while i < len(text) and text[i] in chars:
                i += 1
        else:
            raise _Error(i, f"unexpected character {c!r}")
        tokens.append(_Token(text[start:i], start))
    tokens.append(_Token("", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens, self.i = _tokenize(text), 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        self.i += 1  # every caller stops at the end token: it succeeds or raises
        return self.tokens[self.i - 1]

    def expect(self, punct: str, context: str) -> None:
        token = self.take()
        if token.text != punct:
            raise _Error(token.pos, f"expected {punct!r} {context}, got {token.describe()}")

    def number(self, what: str, low: int, high: int) -> int:
        token = self.take()
        if not token.text[:1].isdigit():
            raise _Error(token.pos, f"expected {what}, got {token.describe()}")
        if len(token.text) > 12 or not low <= int(token.text) <= high:
            raise _Error(token.pos, f"{what} must be {low}..{high}, got {token.text}")
        return int(token.text)

    def document(self) -> DataType:
        result = self.type(0)
        token = self.take()
        if token.text:
            raise _Error(token.pos, f"expected end of input, got {token.describe()}")
        return result

    def type(self, depth: int) -> DataType:
        token = self.take()
        if depth > MAX_DEPTH:
            raise _Error(token.pos, f"types nest deeper than {MAX_DEPTH} levels")
        if token.text[:1] not in _NAME_START:
            raise _Error(token.pos, f"expected a type name, got {token.describe()}")
        word = token.text.lower()
        if word == "string" and self.peek().text == "(":
            self.take()
            length = self.number("a string length", 1, MAX_STRING_LENGTH)
            self.expect(")", "after the string length")
            return String(length)
        if word in PRIMITIVE_NAMES:
            if self.peek().text in ("(", "<"):
                raise _Error(self.peek().pos, f"{word} takes no parameters")
            return Primitive(word)
        if word == "decimal":
            self.expect("(", "after decimal (write decimal(precision,scale))")
            precision = self.number("a decimal precision", 1, MAX_DECIMAL_PRECISION)
            self.expect(",", "between decimal precision and scale")
            scale = self.number("a decimal scale", 0, precision)
            self.expect(")", "after the decimal scale")
            return Decimal(precision, scale)
        if word == "list":
            self.expect("<", "after list")
            item = self.type(depth + 1)
            self.expect(">", "to close list<")
            return ListType(item)
        if word == "map":
            self.expect("<", "after map")
            key_pos = self.peek().pos
            key = self.type(depth + 1)
            if not isinstance(key, Primitive | Decimal | String):
                problem = f"a map key must be a primitive, decimal or string(n), not {key}"
                raise _Error(key_pos, problem)
            self.expect(",", "between map key and value types")
            value = self.type(depth + 1)
            self.expect(">", "to close map<")
            return MapType(key, value)
        if word == "struct":
            return self.struct(depth)
        raise _unknown(token)

    def struct(self, depth: int) -> StructType:
        self.expect("<", "after struct")
        fields: list[tuple[str, DataType]] = []
        while True:
            name = self.take()
            if name.text[:1] not in _NAME_START:
                raise _Error(name.pos, f"expected a struct field name, got {name.describe()}")
            if name.text.lower() in (n.lower() for n, _ in fields):
                raise _Error(name.pos, f"duplicate struct field name {name.text!r}")
            self.expect(":", f"after struct field name {name.text!r}")
            fields.append((name.text, self.type(depth + 1)))
            token = self.take()
            if token.text == ">":
                return StructType(tuple(fields))
            if token.text != ",":
                raise _Error(token.pos, f"expected ',' or '>' in struct, got {token.describe()}")


def _unknown(token: _Token) -> _Error:
    word = token.text.lower()
    replacement = _ALIASES.get(word)
    if replacement is None:
        close = difflib.get_close_matches(word, _KEYWORDS, n=1)
        replacement = close[0] if close else None
    note = " (SQL INTEGER is int32, BIGINT is int64)" if replacement == "int32" else ""
    problem = f"unknown type {token.text!r}{note}"
    fix = (token.pos, token.pos + len(token.text), replacement) if replacement else None
    return _Error(token.pos, problem, fix)


def _suggest(text: str, error: _Error) -> str | None:
    phrase = _PHRASES.get(" ".join(text.lower().split()))
    if phrase or error.fix is None:
        return phrase
    first = error.fix[2]
    # Apply fixes one after another ("array<bigint>" -> "list<int64>") while they help.
    for _ in range(8):
        if error.fix is None:
            break
        start, end, replacement = error.fix
        text = text[:start] + replacement + text[end:]
        try:
            return format_type(_Parser(text).document())
        except _Error as next_error:
            error = next_error
    return _TEMPLATES.get(first, first)


@functools.lru_cache(maxsize=4096)
def parse_type(text: str) -> DataType:
    """Parse a column type; keywords are case-insensitive, whitespace between tokens is free.

    Raises ``TypeParseError`` (and nothing else) for any text that is not a valid type.
    SQL spellings such as ``varchar`` or ``bigint`` are rejected with a suggestion.
    Results are cached: a large model spells the same few types many times.
    """
    try:
        return _Parser(text).document()
    except _Error as error:
        raise TypeParseError(text, error.pos, error.problem, _suggest(text, error)) from None


# --- Arrow ---------------------------------------------------------------------------

_ARROW = {name: getattr(pa, name)() for name in [*_INT_RANGES, "float16", "float32", "float64"]}
_ARROW |= {"bool": pa.bool_(), "string": pa.string(), "binary": pa.binary()}
_ARROW |= {"date": pa.date32(), "time": pa.time64("us")}
_ARROW |= {"timestamp": pa.timestamp("us"), "timestamp_tz": pa.timestamp("us", tz="UTC")}
# Arrow has no type of their own for these: the field metadata keeps the declared type.
_TAGGED = {"bfloat16": pa.uint16(), "float8_e4m3": pa.uint8(), "float8_e5m2": pa.uint8()}
_TAGGED |= {"uuid": pa.binary(16), "json": pa.string(), "interval": pa.string()}


class UnsupportedArrowTypeError(ValueError):
    """An Arrow field has no dataferry type (duration, union...) or contradicts its metadata."""


def contains(t: DataType, leaf: Callable[[DataType], bool]) -> bool:
    """Whether ``leaf`` holds for ``t`` or any type nested in it (list items, map keys and
    values, struct fields)."""
    match t:
        case ListType(item):
            return contains(item, leaf)
        case MapType(key, value):
            return contains(key, leaf) or contains(value, leaf)
        case StructType(fields):
            return any(contains(f, leaf) for _, f in fields)
    return leaf(t)


def _needs_tag(t: DataType) -> bool:
    return contains(t, lambda leaf: isinstance(leaf, String)
                    or (isinstance(leaf, Primitive) and leaf.name in _TAGGED))


def to_arrow(t: DataType) -> pa.DataType:
    """Return the Arrow storage type of ``t``; use ``to_arrow_field`` to keep the declared type.

    Nested children are fields that carry their own ``dataferry.type`` metadata.
    """
    match t:
        case Primitive(name):
            return _ARROW[name] if name in _ARROW else _TAGGED[name]
        case Decimal(p, s):
            return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
        case String():
            return pa.string()
        case ListType(item):
            return pa.list_(to_arrow_field("item", item))
        case MapType(key, value):
            return pa.map_(to_arrow_field("key", key, False), to_arrow_field("value", value))
        case StructType(fields):
            return pa.struct([to_arrow_field(n, f) for n, f in fields])
        case _:
            assert_never(t)


_STORE_PRIMITIVES = {
    "uint8": pa.int16(), "uint16": pa.int32(), "uint32": pa.int64(),
    "uint64": pa.decimal128(20, 0),
    "float16": pa.float32(), "bfloat16": pa.float32(),
    "float8_e4m3": pa.float32(), "float8_e5m2": pa.float32(),
    "uuid": pa.string(), "time": pa.string(),
}
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
"""How datasets first published before ``timestamp_ntz`` keep ``timestamp`` (see
``to_store_arrow``'s ``utc_timestamps``)."""


def to_store_arrow(t: DataType, *, utc_timestamps: bool = False) -> pa.DataType:
    """The Arrow type the *store* keeps ``t`` in: only types Delta Lake readers accept.

    Delta has no unsigned integers, low-precision floats, time of day or decimals over 38
    digits, so those are kept in the nearest exact type: uint8/16/32 in the next wider
    signed integer, uint64 in decimal(20,0), float16/bfloat16/float8_* as float32 holding
    the exact value, time as ``HH:MM:SS.ffffff`` text, decimal(p>38,s) as text and uuid
    as its 36-character text. ``timestamp`` is a timestamp without a zone (Delta's
    ``timestamp_ntz``); ``utc_timestamps``: as a UTC timestamp of the same wall-clock
    value, as datasets first published before ``timestamp_ntz`` keep it. The field
    metadata of ``to_store_field`` names the declared type, so readers get back exactly
    what was written.
    """
    match t:
        case Primitive("timestamp") if utc_timestamps:
            return UTC_TIMESTAMP
        case Primitive(name):
            return _STORE_PRIMITIVES.get(name) or to_arrow(t)
        case Decimal(p, s):
            return pa.decimal128(p, s) if p <= 38 else pa.string()
        case String():
            return pa.string()
        case ListType(item):
            return pa.list_(to_store_field("item", item, utc_timestamps=utc_timestamps))
        case MapType(key, value):
            return pa.map_(to_store_field("key", key, False, utc_timestamps=utc_timestamps),
                           to_store_field("value", value, utc_timestamps=utc_timestamps))
        case StructType(fields):
            return pa.struct([to_store_field(n, f, utc_timestamps=utc_timestamps)
                              for n, f in fields])
        case _:
            assert_never(t)


def to_store_field(name: str, t: DataType, nullable: bool = True, *,
                   utc_timestamps: bool = False) -> pa.Field:
    """The store's field for a column of type ``t``, tagged with ``t`` when needed."""
    store = to_store_arrow(t, utc_timestamps=utc_timestamps)
    tagged = _needs_tag(t) or store != to_arrow(t)
    metadata = {METADATA_KEY: format_type(t)} if tagged else None
    return pa.field(name, store, nullable=nullable, metadata=metadata)


def to_arrow_field(name: str, t: DataType, nullable: bool = True) -> pa.Field:
    """Return an Arrow field for a column of type ``t``.

    When the Arrow type alone does not determine ``t`` (bfloat16, float8_*, uuid, json,
    interval, string(n), or anything containing them) the field's metadata holds
    ``{"dataferry.type": format_type(t)}``, so ``from_arrow_field`` gives back ``t``
    exactly, also after a Parquet round trip.
    """
    metadata = {METADATA_KEY: format_type(t)} if _needs_tag(t) else None
    return pa.field(name, to_arrow(t), nullable=nullable, metadata=metadata)


def from_arrow_field(field: pa.Field) -> DataType:
    """Return the declared type of an Arrow field: ``from_arrow_field(to_arrow_field(n, t)) == t``.

    Fields without metadata (from other writers) map to the nearest type: large and view
    strings to string, any timestamp unit to timestamp(_tz), month_day_nano intervals and
    durations to interval, dictionaries to their values,
    unknown extension types to their storage type.
    Raises ``UnsupportedArrowTypeError`` for types with no equivalent, and for metadata
    that does not parse or does not match the stored Arrow type.
    """
    tag = (field.metadata or {}).get(METADATA_KEY.encode())
    if tag is not None:
        try:
            declared = parse_type(tag.decode("utf-8", "replace"))
        except TypeParseError as error:
            raise UnsupportedArrowTypeError(f"field {field.name!r}: {error}") from None
        if not (_same_storage(to_arrow(declared), field.type)
                or _same_storage(to_store_arrow(declared), field.type)
                or _same_storage(to_store_arrow(declared, utc_timestamps=True), field.type)):
            raise UnsupportedArrowTypeError(
                f"field {field.name!r} is declared {declared} but stored as {field.type}"
            )
        return declared
    try:
        return _from_arrow_type(field.type)
    except UnsupportedArrowTypeError:
        raise
    except ValueError as error:  # e.g. a struct field name dataferry does not allow
        raise UnsupportedArrowTypeError(f"field {field.name!r}: {error}") from None


def _same_storage(a: pa.DataType, b: pa.DataType) -> bool:
    if pa.types.is_dictionary(b):
        b = b.value_type
    if isinstance(b, pa.BaseExtensionType):  # e.g. arrow.uuid, arrow.json (parquet sink)
        b = b.storage_type
    if pa.types.is_list(a) and pa.types.is_list(b):
        return _same_storage(a.value_type, b.value_type)
    if pa.types.is_map(a) and pa.types.is_map(b):
        return _same_storage(a.key_type, b.key_type) and _same_storage(a.item_type, b.item_type)
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        pairs = list(zip(a, b, strict=False))
        same = all(x.name == y.name and _same_storage(x.type, y.type) for x, y in pairs)
        return bool(a.num_fields == b.num_fields and same)
    return bool(a == b)


def _from_arrow_type(t: pa.DataType) -> DataType:
    types = pa.types
    if isinstance(t, pa.BaseExtensionType):
        known = {"arrow.uuid": "uuid", "arrow.json": "json"}.get(t.extension_name)
        return Primitive(known) if known else _from_arrow_type(t.storage_type)
    if types.is_dictionary(t):
        return _from_arrow_type(t.value_type)
    for name, arrow_type in _ARROW.items():
        if t == arrow_type:
            return Primitive(name)
    if types.is_large_string(t) or types.is_string_view(t):
        return Primitive("string")
    if types.is_large_binary(t) or types.is_binary_view(t) or types.is_fixed_size_binary(t):
        return Primitive("binary")
    if types.is_date(t) or types.is_time(t):
        return Primitive("date" if types.is_date(t) else "time")
    if types.is_timestamp(t):
        return Primitive("timestamp_tz" if t.tz else "timestamp")
    if types.is_decimal(t):
        return Decimal(t.precision, t.scale)
    if t == pa.month_day_nano_interval() or types.is_duration(t):
        return Primitive("interval")  # conform writes them as ISO 8601 text
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t):
        return ListType(from_arrow_field(t.value_field))
    if types.is_list_view(t) or types.is_large_list_view(t):
        return ListType(from_arrow_field(t.value_field))
    if types.is_map(t):
        return MapType(from_arrow_field(t.key_field), from_arrow_field(t.item_field))
    if types.is_struct(t):
        return StructType(tuple((f.name, from_arrow_field(f)) for f in t))
    raise UnsupportedArrowTypeError(f"Arrow type {t} has no dataferry type")


# --- compatibility -------------------------------------------------------------------

# Pairs checked bit pattern by bit pattern in the tests; anything else is not exact.
_EXACT_FLOATS = {
    ("float16", "float32"), ("float16", "float64"), ("bfloat16", "float32"),
    ("bfloat16", "float64"), ("float32", "float64"),
} | {(f8, f) for f8 in _FLOATS[:2] for f in ("float16", "bfloat16", "float32", "float64")}  # fmt: skip


def _int_digits(name: str) -> int:
    low, high = _INT_RANGES[name]
    return len(str(max(-low, high)))


def family(t: DataType) -> str:
    """Return the type family: integer, float, decimal, string, list, map, struct, or the
    primitive's own name (bool, binary, date, time, timestamp, timestamp_tz, uuid, json,
    interval)."""
    match t:
        case Primitive(name):
            return _FAMILIES[name]
        case String():
            return "string"
        case Decimal():
            return "decimal"
        case ListType():
            return "list"
        case MapType():
            return "map"
        case StructType():
            return "struct"
        case _:
            assert_never(t)


def is_widening(old: DataType, new: DataType) -> bool:
    """True iff every value of ``old`` is exactly a value of ``new`` with the same meaning.

    Identical types widen. Across families only integer -> decimal (with enough integer
    digits) widens. Struct fields match by name; new fields may be added.
    """
    if old == new:
        return True
    match old, new:
        case Primitive(o), Primitive(n) if o in _INT_RANGES and n in _INT_RANGES:
            (old_low, old_high), (new_low, new_high) = _INT_RANGES[o], _INT_RANGES[n]
            return new_low <= old_low and old_high <= new_high
        case Primitive(o), Primitive(n):
            return (o, n) in _EXACT_FLOATS
        case Primitive(o), Decimal(p, s) if o in _INT_RANGES:
            return p - s >= _int_digits(o)
        case Decimal(p, s), Decimal(new_p, new_s):
            return new_s >= s and new_p - new_s >= p - s
        case String(n), String(m):
            return m >= n
        case String(), Primitive("string"):
            return True
        case ListType(a), ListType(b):
            return is_widening(a, b)
        case MapType(old_key, old_value), MapType(new_key, new_value):
            return is_widening(old_key, new_key) and is_widening(old_value, new_value)
        case StructType(old_fields), StructType(new_fields):
            by_name = dict(new_fields)
            return all(n in by_name and is_widening(f, by_name[n]) for n, f in old_fields)
    return False


def describe_change(old: DataType, new: DataType) -> str | None:
    """None if ``old -> new`` widens, else a short reason, e.g. ``narrowing int64 -> int32``."""
    if is_widening(old, new):
        return None
    match old, new:
        case ListType(a), ListType(b):
            return f"list item: {describe_change(a, b)}"
        case MapType(old_key, old_value), MapType(new_key, new_value):
            if key_change := describe_change(old_key, new_key):
                return f"map key: {key_change}"
            return f"map value: {describe_change(old_value, new_value)}"
        case StructType(old_fields), StructType(new_fields):
            by_name = dict(new_fields)
            for name, field in old_fields:
                if name not in by_name:
                    return f"struct field {name!r} removed"
                if change := describe_change(field, by_name[name]):
                    return f"struct field {name!r}: {change}"
    change = f"{old} -> {new}"
    if family(old) != family(new) and (family(old), family(new)) != ("integer", "decimal"):
        return f"type family changed from {family(old)} to {family(new)} ({change})"
    if isinstance(old, Primitive) and old.name in _INT_RANGES and isinstance(new, Decimal):
        digits = new.precision - new.scale
        return f"narrowing {change}: needs {_int_digits(old.name)} integer digits, has {digits}"
    if isinstance(old, Decimal) and isinstance(new, Decimal) and new.scale < old.scale:
        return f"narrowing {change}: scale {old.scale} -> {new.scale} drops fractional digits"
    if isinstance(old, Decimal) and isinstance(new, Decimal):
        kept = f"{old.precision - old.scale} -> {new.precision - new.scale}"
        return f"narrowing {change}: integer digits {kept}"
    if is_widening(new, old) or isinstance(new, String):
        return f"narrowing {change}"
    return f"{change} cannot hold every {old} value exactly"
