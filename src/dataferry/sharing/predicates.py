"""Skipping files by ``jsonPredicateHints`` (the protocol's predicate tree) and each file's
statistics (``minValues``, ``maxValues``, ``nullCount``, ``numRecords``).

A hint is only a hint: the client filters the rows again, so a file is skipped only when
its statistics prove no row can match. Anything not understood (an unknown op, a column
without bounds, a value that does not compare) keeps the file.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

_COMPARE = {"equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"}
_FLIP = {"lessThan": "greaterThan", "lessThanOrEqual": "greaterThanOrEqual",
         "greaterThan": "lessThan", "greaterThanOrEqual": "lessThanOrEqual", "equal": "equal"}


def parse_hints(text: Any) -> dict[str, Any] | None:
    """The predicate tree of a ``jsonPredicateHints`` value, or None (no usable hint)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        tree = json.loads(text)
    except ValueError:
        return None
    return tree if isinstance(tree, dict) else None


def may_match(tree: dict[str, Any] | None, stats: str) -> bool:
    """False only when the file's ``stats`` prove that no row satisfies ``tree``."""
    if tree is None:
        return True
    try:
        facts = json.loads(stats)
    except ValueError:
        return True
    return _may(tree, facts) is not False


def _may(node: Any, facts: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    op, children = node.get("op"), node.get("children") or []
    if op == "and":
        answers = [_may(child, facts) for child in children]
        return False if any(a is False for a in answers) else None
    if op == "or":
        answers = [_may(child, facts) for child in children]
        return False if answers and all(a is False for a in answers) else None
    if op == "isNull" and len(children) == 1 and children[0].get("op") == "column":
        nulls = (facts.get("nullCount") or {}).get(children[0].get("name"))
        return False if nulls == 0 else None
    if op in _COMPARE and len(children) == 2:
        left, right = children
        if left.get("op") == "literal" and right.get("op") == "column":
            left, right, op = right, left, _FLIP[op]
        if left.get("op") == "column" and right.get("op") == "literal":
            return _compare(op, str(left.get("name")), right, facts)
    return None


def _compare(op: str, column: str, literal: dict[str, Any], facts: dict[str, Any]
             ) -> bool | None:
    low = (facts.get("minValues") or {}).get(column)
    high = (facts.get("maxValues") or {}).get(column)
    value = _value(literal)
    if value is None:
        return None
    try:
        lo = None if low is None else _like(value, low)
        hi = None if high is None else _like(value, high)
        if op == "equal":
            return False if (lo is not None and value < lo) or (hi is not None and value > hi) \
                else None
        if op in ("lessThan", "lessThanOrEqual") and lo is not None:
            return False if (value <= lo if op == "lessThan" else value < lo) else None
        if op in ("greaterThan", "greaterThanOrEqual") and hi is not None:
            return False if (value >= hi if op == "greaterThan" else value > hi) else None
    except (TypeError, ValueError):
        return None
    return None


def _value(literal: dict[str, Any]) -> Any:
    raw, kind = literal.get("value"), str(literal.get("valueType", "")).lower()
    if raw is None:
        return None
    try:
        if kind in ("int", "long"):
            return int(raw)
        if kind in ("float", "double"):
            return None  # files of floats carry no bounds (NaN): never skip on them
        if kind == "date":
            return date.fromisoformat(str(raw))
        if kind == "string":
            return str(raw)
    except ValueError:
        return None
    return None  # booleans, timestamps, decimals: kept (no skipping) in this slice


def _like(value: Any, bound: Any) -> Any:
    """A statistics bound as the literal's type (bounds are JSON: numbers, texts)."""
    if isinstance(value, bool) or isinstance(bound, bool):
        raise TypeError("booleans are not compared")
    if isinstance(value, int):
        if not isinstance(bound, int):
            raise TypeError("not a whole number")
        return bound
    if isinstance(value, date) and not isinstance(value, datetime):
        return date.fromisoformat(str(bound)[:10])
    if isinstance(value, str):
        if not isinstance(bound, str):
            raise TypeError("not a string")
        return bound
    raise TypeError("not comparable")
