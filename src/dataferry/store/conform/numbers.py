"""Integers, floats, decimals and booleans."""

from __future__ import annotations

from decimal import Decimal as PyDecimal
from decimal import InvalidOperation
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType, Decimal, Primitive, to_arrow_field
from dataferry.store.conform.kinds import _INT_RANGES, _TEXT
from dataferry.store.conform.low_floats import _FORMATS, _encode
from dataferry.store.conform.rejections import _cast, _first, _reject


def _to_integer(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind not in ("integer", "floating", "decimal", *_TEXT):
        return None
    name = cast(Primitive, declared).name
    signed, bits = _INT_RANGES[name]
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def why(value: Any) -> str:
        try:
            number = PyDecimal(str(value).strip())
            if number.is_finite() and number == number.to_integral_value():
                return f"is out of range for {name} ({low}..{high})"
            return "has a fractional part" if number.is_finite() else "is not a number"
        except InvalidOperation:
            return "is not an integer"

    target, hint = getattr(pa, name)(), "fix the value at the source, or declare a wider " \
        "type (int64, decimal)"
    given = a
    if kind == "string":  # "42" fast; "42.0" and "4.2e1" (CSV from float columns) exactly
        try:
            return pc.cast(a, target)
        except pa.ArrowInvalid:
            a = _cast(a, pa.decimal256(76, 38), declared, why, hint)
    return _cast(a, target, declared, why, hint, given)


def _to_float(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    return _as_float(a, kind, declared, getattr(pa, cast(Primitive, declared).name)())


def _as_float(a: pa.Array, kind: str, declared: DataType, target: pa.DataType) -> Any:
    """Floats of type ``target`` (correctly rounded) from numbers or numeric text."""
    name, digits = ("float32", 24) if target == pa.float32() else ("float64", 53)
    if kind == "integer":
        return _cast(a, target, declared, lambda v: f"is not exactly representable in "
                     f"{name} (integers beyond ±2**{digits} lose digits)",
                     "declare float64, an integer or a decimal type")
    if kind == "decimal":  # via text: Arrow's direct cast is not always correctly rounded
        a = pc.cast(a, pa.string())
    elif kind not in (*_TEXT, "floating"):
        return None
    wide = a if kind == "floating" else _cast(
        a, pa.float64(), declared, lambda v: "is not a number",
        "write numbers like 1.5, -2e10, nan or inf")
    result = pc.cast(a, target)
    index = _first(pc.and_(pc.is_finite(wide), pc.invert(pc.is_finite(result))))
    if index is not None:
        _reject(a, index, f"is too large for {name}", "declare float64", declared)
    return result


def _to_decimal(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    p, s = cast(Decimal, declared).precision, cast(Decimal, declared).scale
    target, given = to_arrow_field("", declared).type, a
    if kind == "integer":
        a = pc.cast(a, pa.decimal128(38, 0))
    elif kind == "floating":
        index = _first(pc.invert(pc.is_finite(a)))
        if index is not None:
            _reject(a, index, "is not a finite number", "a decimal has no NaN or infinity",
                    declared)
        a = pc.cast(a, pa.string())  # the shortest text that reads back as the same float
    elif kind not in ("decimal", *_TEXT):
        return None

    def why(value: Any) -> str:
        try:
            number = PyDecimal(str(value).strip())
        except InvalidOperation:
            return "is not a decimal number"
        if not number.is_finite():
            return "is not a finite number"
        _, digits, exponent = number.as_tuple()
        exponent = int(exponent)
        while len(digits) > 1 and digits[-1] == 0 and exponent < 0:
            digits, exponent = digits[:-1], exponent + 1
        if -exponent > s:
            return f"has more than {s} digits after the decimal point"
        return f"has more than {p - s} digits before the decimal point"

    return _cast(a, target, declared, why, "round or fix the value at the source, or declare "
                 "a decimal with more precision or scale", given)


def _to_low_float(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    fmt = _FORMATS[cast(Primitive, declared).name]
    if a.type == fmt.storage and (tag == declared or fmt.name == "float16"):
        return a
    floats = a if kind == "floating" else _as_float(a, kind, declared, pa.float64())
    return None if floats is None else _encode(floats, fmt, declared)


def _to_bool(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind == "boolean":
        return a
    if kind == "integer":
        outside = pc.invert(pc.is_in(a, pa.array([0, 1], a.type)))
        index = _first(pc.and_(outside, pc.is_valid(a)))  # nulls stay null
        if index is not None:
            _reject(a, index, "is not 0 or 1", "write booleans as true/false or 1/0", declared)
        return pc.cast(a, pa.bool_())
    if kind in _TEXT:
        return _cast(pc.utf8_lower(a), pa.bool_(), declared, lambda v: "is not a boolean",
                     "write booleans as true/false or 1/0", a)
    return None
