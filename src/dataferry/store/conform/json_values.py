"""json: text as given, or nested Arrow values written as compact JSON."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal as PyDecimal
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType, Primitive
from dataferry.store.conform.kinds import _LISTS, _TEXT, _kind
from dataferry.store.conform.rejections import _reject


def _to_json(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in _TEXT:
        a = pc.cast(a, pa.string())
        if tag == Primitive("json"):  # its producer checked it (PostgreSQL json, our files)
            return a
        for index, text in enumerate(a.to_pylist()):
            if text is not None:
                try:
                    json.loads(text, parse_constant=_no_constant)
                except ValueError as error:
                    _reject(a, index, f"is not valid JSON ({error})",
                            "fix the JSON text at the source", declared)
        return a
    if kind not in ("struct", "map", *_LISTS):
        return None
    texts = []
    for index, value in enumerate(a.to_pylist()):
        try:
            texts.append(None if value is None else json.dumps(
                _jsonable(value, a.type), separators=(",", ":"), ensure_ascii=False,
                allow_nan=False))
        except ValueError as error:
            _reject(a, index, f"cannot be written as JSON ({error})",
                    "fix the value at the source", declared)
    return pa.array(texts, pa.string())


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) or key is None else str(key)


def _jsonable(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_struct(t):
        return {f.name: _jsonable(value[f.name], f.type) for f in t}
    if pa.types.is_map(t):
        return {_json_key(_jsonable(k, t.key_type)): _jsonable(v, t.item_type) for k, v in value}
    if _kind(t) in _LISTS:
        return [_jsonable(v, t.value_type) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    if isinstance(value, bytes):
        raise ValueError("binary values have no JSON form; base64-encode them at the source")
    if isinstance(value, PyDecimal | date | time | datetime) or not isinstance(
        value, str | int | float | bool
    ):
        return value.isoformat() if isinstance(value, date | time) else str(value)
    return value
