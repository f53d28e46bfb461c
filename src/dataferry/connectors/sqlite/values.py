"""Values between Arrow and SQLite: columns to bind (sink) and fetched rows to Arrow (source).

The forms are those of ``types.py``'s module docstring.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal as PyDecimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.parquet.types import to_file_array
from dataferry.model.types import DataType, ListType, MapType, Primitive, StructType, family

# --- sink: Arrow -> values to bind -----------------------------------------------------


def bind_values(array: pa.Array, t: DataType, separator: str = " ") -> list[Any]:
    """Python values to bind for a column of model type ``t`` (one per row, None for null);
    ``separator`` goes between a timestamp's date and time."""
    array = to_file_array(array, t)
    kind = family(t)
    if kind in ("list", "map", "struct"):
        return [None if v is None else dump_json(v, t) for v in array.to_pylist()]
    if kind == "bool":
        return array.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]
    if t == Primitive("uint64") or kind in ("decimal", "date", "time"):
        return array.cast(pa.string()).to_pylist()  # type: ignore[no-any-return]
    if kind == "float":
        return array.cast(pa.float64()).to_pylist()  # type: ignore[no-any-return]
    if kind in ("timestamp", "timestamp_tz"):
        return timestamp_text(array, separator).to_pylist()  # type: ignore[no-any-return]
    return array.to_pylist()  # type: ignore[no-any-return]


def timestamp_text(array: pa.Array, separator: str = "T") -> pa.Array:
    """ISO 8601 text of timestamps: ``YYYY-MM-DDTHH:MM:SS.ffffff`` (or ``separator`` for
    ``T``), ``+00:00`` when zoned."""
    zoned = array.type.tz is not None
    if zoned:
        array = array.cast(pa.timestamp("us", tz="UTC"))
    text = pc.strftime(array.cast(pa.timestamp("us", tz=array.type.tz)), format=f"%Y-%m-%d{separator}%H:%M:%S")
    return pc.binary_join_element_wise(text, "+00:00", "") if zoned else text


def dump_json(value: Any, t: DataType) -> str:
    """Compact JSON text of a nested value (as ``to_pylist`` gives it) of model type ``t``."""
    return json.dumps(_jsonable(value, t), separators=(",", ":"), ensure_ascii=False)


def _jsonable(value: Any, t: DataType) -> Any:
    if value is None:
        return None
    match t:
        case MapType(key, item):
            return {_key(_jsonable(k, key)): _jsonable(v, item) for k, v in value}
        case StructType(fields):
            return {n: _jsonable(value.get(n), f) for n, f in fields}
        case ListType(item):
            return [_jsonable(v, item) for v in value]
        case Primitive("json"):
            return json.loads(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, PyDecimal):
        return str(value)
    return value


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


# --- source: fetched values -> Arrow ------------------------------------------------------


class UnfitValue(ValueError):
    """A fetched value that does not fit the column's Arrow type."""


def to_arrow(values: list[Any], arrow_type: pa.DataType, nested: DataType | None) -> pa.Array:
    """An Arrow array of ``arrow_type`` from fetched SQLite values (JSON text when ``nested``).

    Raises ``UnfitValue`` naming the first value that does not fit.
    """
    if nested is not None:
        parsed = [None if v is None else _from_json(_json_text(v)) for v in values]
        return pa.array([_shape(v, arrow_type, _IN_JSON) for v in parsed], type=arrow_type)
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        leaf = _LEAVES[str(arrow_type)]
        return pa.array([None if v is None else leaf(v) for v in values], type=arrow_type)


def _json_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        return json.dumps(value)
    return value


def _from_json(text: str) -> Any:
    try:
        return json.loads(text, parse_float=PyDecimal)
    except ValueError as error:
        raise UnfitValue(f"{_show(text)} is not JSON ({error})") from None


def _shape(value: Any, t: pa.DataType, leaves: dict[str, Callable[[Any], Any]]) -> Any:
    """``value`` (parsed JSON) in the Python form pyarrow builds ``t`` from."""
    if value is None:
        return None
    if pa.types.is_list(t):
        if not isinstance(value, list):
            raise UnfitValue(f"{_show(value)} is not a JSON array")
        return [_shape(v, t.value_type, leaves) for v in value]
    if pa.types.is_map(t):
        if not isinstance(value, dict):
            raise UnfitValue(f"{_show(value)} is not a JSON object")
        return [(_shape(k, t.key_type, leaves), _shape(v, t.item_type, leaves)) for k, v in value.items()]
    if pa.types.is_struct(t):
        if not isinstance(value, dict):
            raise UnfitValue(f"{_show(value)} is not a JSON object")
        return {f.name: _shape(value.get(f.name), f.type, leaves) for f in t}
    return leaves[str(t)](value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float | PyDecimal) and value == int(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise UnfitValue(f"{_show(value)} is not an integer")


def _float(value: Any) -> float:
    try:
        if isinstance(value, int | float | PyDecimal | str) and not isinstance(value, bool):
            return float(value)
    except ValueError:
        pass
    raise UnfitValue(f"{_show(value)} is not a number")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise UnfitValue(f"{_show(value)} is not a boolean")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | PyDecimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnfitValue(f"{_show(value)} is not UTF-8 text") from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _binary(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise UnfitValue(f"{_show(value)} is not binary")


def _base64(value: Any) -> bytes:
    """Binary inside JSON is base64 text (as the sink writes it); other text is UTF-8."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    return _binary(value)


_LEAVES: dict[str, Callable[[Any], Any]] = {
    "int64": _int, "double": _float, "bool": _bool, "string": _text, "binary": _binary,
}
_IN_JSON = {**_LEAVES, "binary": _base64}
