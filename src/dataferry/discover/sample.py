"""The type a column of text values holds, from a sample of them (SQLite keeps dates,
decimals and JSON as text)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime

from dataferry.model.types import DataType, Decimal, Primitive

SAMPLE_ROWS = 1000
"""How many non-null values of a column are looked at."""

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
                        r"(?P<zone>Z|[+-]\d{2}:?\d{2})?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
_DECIMAL = re.compile(r"^-?(\d+)\.(\d+)$")


def text_type(values: Sequence[str]) -> DataType | None:
    """The type every value is the text of (None: plain text, or nothing in common)."""
    if all(_DATE.match(v) for v in values):
        return Primitive("date") if all(_parses(v) for v in values) else None
    stamps = [_TIMESTAMP.match(v) for v in values]
    if all(stamps) and all(_parses(v) for v in values):
        zoned = {bool(m and m["zone"]) for m in stamps}
        return None if zoned == {True, False} else Primitive(
            "timestamp_tz" if True in zoned else "timestamp")
    if all(_UUID.match(v) for v in values):
        return Primitive("uuid")
    if all(v[:1] in "[{" for v in values) and all(_is_json(v) for v in values):
        return Primitive("json")
    digits = [_DECIMAL.match(v) for v in values]
    if all(digits):
        whole = max(len(m[1].lstrip("0") or "0") for m in digits if m)
        scale = max(len(m[2]) for m in digits if m)
        precision = max(18, whole + scale + 2)  # room to grow past the sampled values
        return Decimal(precision, scale) if precision <= 38 else None
    return None


def _parses(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
