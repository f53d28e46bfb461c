"""Skipping files by ``jsonPredicateHints`` (the protocol's predicate tree; the SQL
``predicateHints`` become the same tree, see sql_hints.py) and each file's statistics
(``minValues``, ``maxValues``, ``nullCount``, ``numRecords``).

A hint is only a hint: the client filters the rows again, so a file is skipped only when
its statistics prove no row can match. Anything not understood (an unknown op, a column
without bounds, a value that does not compare, a literal of another type than its
column's) keeps the file.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pyarrow as pa

_COMPARE = {"equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"}
_FLIP = {"lessThan": "greaterThan", "lessThanOrEqual": "greaterThanOrEqual",
         "greaterThan": "lessThan", "greaterThanOrEqual": "lessThanOrEqual", "equal": "equal"}


def parse_hints(text: Any) -> dict[str, Any] | None:
    """The predicate tree of a ``jsonPredicateHints`` value, or None (no usable hint)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        tree = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return tree if isinstance(tree, dict) else None


def both(*trees: dict[str, Any] | None) -> dict[str, Any] | None:
    """One tree for hints that must all hold (the JSON and the SQL ones of a query)."""
    found = [tree for tree in trees if tree is not None]
    if len(found) < 2:
        return found[0] if found else None
    return {"op": "and", "children": found}


def column_kinds(schema: pa.Schema) -> dict[str, str]:
    """The literal type (``long``, ``string``, ``date``) each column of ``schema`` compares
    with; columns of other types are left out (nothing is skipped on them)."""
    kinds: dict[str, str] = {}
    for field in schema:
        if pa.types.is_integer(field.type):
            kinds[field.name] = "long"
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            kinds[field.name] = "string"
        elif pa.types.is_date32(field.type):
            kinds[field.name] = "date"
    return kinds


def may_match(tree: dict[str, Any] | None, stats: str,
              kinds: dict[str, str] | None = None) -> bool:
    """False only when the file's ``stats`` prove that no row satisfies ``tree``; with the
    table's ``kinds`` (``column_kinds``), a comparison whose literal is not of its
    column's type keeps the file (a string compared with a timestamp's text bound is no
    proof)."""
    if tree is None:
        return True
    try:
        facts = json.loads(stats)
        return _may(tree, facts, kinds) is not False
    except (ValueError, RecursionError):  # a tree nested too deep is no proof either
        return True


def _may(node: Any, facts: dict[str, Any], kinds: dict[str, str] | None) -> bool | None:
    if not isinstance(node, dict):
        return None
    op, children = node.get("op"), node.get("children") or []
    if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
        return None
    if op == "and":
        answers = [_may(child, facts, kinds) for child in children]
        return False if any(a is False for a in answers) else None
    if op == "or":
        answers = [_may(child, facts, kinds) for child in children]
        return False if answers and all(a is False for a in answers) else None
    if op == "not" and len(children) == 1:
        return _may_not(children[0], facts, kinds)
    if op == "isNull" and len(children) == 1 and children[0].get("op") == "column":
        nulls = (facts.get("nullCount") or {}).get(children[0].get("name"))
        return False if nulls == 0 else None
    if op in _COMPARE and len(children) == 2:
        found = _column_and_literal(op, children)
        if found is not None:
            return _compare(*found, facts, kinds)
    return None


def _column_and_literal(op: str, children: list[dict[str, Any]]
                        ) -> tuple[str, str, dict[str, Any]] | None:
    """``(op, column, literal)`` of a comparison, the column on the left."""
    left, right = children
    if left.get("op") == "literal" and right.get("op") == "column":
        left, right, op = right, left, _FLIP[op]
    if left.get("op") == "column" and right.get("op") == "literal":
        return op, str(left.get("name")), right
    return None


def _may_not(node: dict[str, Any], facts: dict[str, Any], kinds: dict[str, str] | None
             ) -> bool | None:
    """``not``: of ``isNull``, False when every row is null; of ``equal`` on a whole number
    or a date, False when every value is that one (string bounds may be cut: kept)."""
    children = node.get("children") or []
    if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
        return None
    if node.get("op") == "isNull" and len(children) == 1 \
            and children[0].get("op") == "column":
        name = children[0].get("name")
        nulls = (facts.get("nullCount") or {}).get(name)
        rows = facts.get("numRecords")
        return False if isinstance(nulls, int) and nulls == rows else None
    if node.get("op") == "equal" and len(children) == 2:
        found = _column_and_literal("equal", children)
        if found is None or str(found[2].get("valueType", "")).lower() not in (
                "int", "long", "date") or not _typed(found[1], found[2], kinds):
            return None
        _, column, literal = found
        low = (facts.get("minValues") or {}).get(column)
        high = (facts.get("maxValues") or {}).get(column)
        value = _value(literal)
        if value is None or low is None or high is None:
            return None
        try:
            return False if _like(value, low) == value == _like(value, high) else None
        except (TypeError, ValueError):
            return None
    return None


def _typed(column: str, literal: dict[str, Any], kinds: dict[str, str] | None) -> bool:
    """Whether the literal's type is the column's (always, without the table's kinds)."""
    if kinds is None:
        return True
    kind = str(literal.get("valueType", "")).lower()
    return kinds.get(column) == ("long" if kind == "int" else kind)


def _compare(op: str, column: str, literal: dict[str, Any], facts: dict[str, Any],
             kinds: dict[str, str] | None) -> bool | None:
    if not _typed(column, literal, kinds):
        return None
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
