"""The SQL ``predicateHints`` of a query (the protocol's older field: a list of SQL boolean
expressions, e.g. ``["date >= '2021-01-01'", "country = 'US'"]``) as the predicate tree of
``jsonPredicateHints``, so predicates.py skips files by the same rules.

Each expression is parsed with sqlglot (Spark's dialect, as the clients write them) and
becomes a tree only where its meaning is certain: comparisons (``=``, ``<>``, ``!=``,
``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``, ``IN``) between a column of the table and a
literal of the column's type (a whole number for an integer column, a string for a string
column, ``'YYYY-MM-DD'`` or ``DATE '...'`` for a date column), ``IS [NOT] NULL``, ``AND``,
``OR`` and ``NOT``. Anything else (another column type, a function, a cast, ``LIKE``, an
expression that does not parse) becomes an ``unknown`` node, which keeps every file: the
client filters the rows again in any case.
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from sqlglot import expressions as exp
from sqlglot.errors import SqlglotError

UNKNOWN: dict[str, Any] = {"op": "unknown"}
MAX_HINTS, MAX_LENGTH = 100, 10_000
"""More or longer hints than these are not read (the files are all kept)."""

_OPS: dict[type[exp.Expr], str] = {
    exp.EQ: "equal", exp.LT: "lessThan", exp.LTE: "lessThanOrEqual",
    exp.GT: "greaterThan", exp.GTE: "greaterThanOrEqual",
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WHOLE = {exp.DataType.Type.TINYINT: 2**7 - 1, exp.DataType.Type.SMALLINT: 2**15 - 1,
          exp.DataType.Type.INT: 2**31 - 1, exp.DataType.Type.BIGINT: 2**63 - 1}
"""Integer types a literal may be cast to, with the largest value each holds (a larger
literal would wrap, and is not read)."""


def sql_hints(value: Any, kinds: dict[str, str]) -> dict[str, Any] | None:
    """The predicate tree of a ``predicateHints`` value (all its expressions must hold),
    or None when it holds none; ``kinds``: the table's columns by literal type
    (``predicates.column_kinds``)."""
    if not isinstance(value, list) or not value or len(value) > MAX_HINTS:
        return None
    trees = [_expression(text, kinds) for text in value]
    return {"op": "and", "children": trees}


def _expression(text: Any, kinds: dict[str, str]) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_LENGTH:
        return UNKNOWN
    try:
        parsed = sqlglot.parse_one(text, read="spark")
    except (SqlglotError, ValueError, RecursionError):
        return UNKNOWN
    try:
        return _tree(parsed, kinds)
    except RecursionError:
        return UNKNOWN


def _tree(node: exp.Expr, kinds: dict[str, str]) -> dict[str, Any]:
    if isinstance(node, exp.Paren):
        return _tree(node.this, kinds)
    if isinstance(node, exp.And | exp.Or):
        return {"op": "and" if isinstance(node, exp.And) else "or",
                "children": [_tree(node.this, kinds), _tree(node.expression, kinds)]}
    if isinstance(node, exp.Not):
        inner = _tree(node.this, kinds)
        if inner["op"] == "not":  # NOT NOT x is x, nulls too
            child: dict[str, Any] = inner["children"][0]
            return child
        return {"op": "not", "children": [inner]}
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        column = _column(node.this, kinds)
        return {"op": "isNull", "children": [column]} if column else UNKNOWN
    if isinstance(node, exp.NEQ):
        return {"op": "not", "children": [_compare("equal", node.this, node.expression,
                                                   kinds)]}
    op = _OPS.get(type(node))
    if op is not None:
        return _compare(op, node.this, node.expression, kinds)
    if isinstance(node, exp.Between):
        return {"op": "and", "children": [
            _compare("greaterThanOrEqual", node.this, node.args.get("low"), kinds),
            _compare("lessThanOrEqual", node.this, node.args.get("high"), kinds)]}
    if isinstance(node, exp.In) and node.expressions and not node.args.get("query"):
        return {"op": "or", "children": [_compare("equal", node.this, item, kinds)
                                         for item in node.expressions]}
    return UNKNOWN


def _compare(op: str, left: Any, right: Any, kinds: dict[str, str]) -> dict[str, Any]:
    """A comparison of a column and a literal of its type (either side), else unknown."""
    for column_side, literal_side, flipped in ((left, right, False), (right, left, True)):
        column = _column(column_side, kinds)
        if column is None:
            continue
        literal = _literal(literal_side, kinds[column["name"]])
        if literal is None:
            return UNKNOWN
        children = [literal, column] if flipped else [column, literal]
        return {"op": op, "children": children}
    return UNKNOWN


def _column(node: Any, kinds: dict[str, str]) -> dict[str, Any] | None:
    """A column of the table (not qualified; by its name, else the one name that matches
    it ignoring case, as Spark does), with its type."""
    if not isinstance(node, exp.Column) or node.table or not isinstance(node.this,
                                                                         exp.Identifier):
        return None
    name = node.this.name
    if name not in kinds:
        matches = [known for known in kinds if known.lower() == name.lower()]
        if len(matches) != 1:
            return None
        name = matches[0]
    return {"op": "column", "name": name, "valueType": kinds[name]}


def _literal(node: Any, kind: str) -> dict[str, Any] | None:
    """A literal of type ``kind`` (``long``, ``string``, ``date``), or None. Spark writes
    typed whole numbers as casts (``5L``: a bigint, ``5S``, ``5Y``) and dates as ``DATE
    '...'``: a cast of a literal its type holds as it is is that literal."""
    negative, limit = False, None
    while True:
        if isinstance(node, exp.Neg):
            negative, node = not negative, node.this
        elif isinstance(node, exp.Cast) and kind == "long" and _WHOLE.get(node.to.this):
            largest = _WHOLE[node.to.this]
            limit, node = largest if limit is None else min(limit, largest), node.this
        elif isinstance(node, exp.Cast) and kind == "date" and not negative \
                and node.to.is_type(exp.DataType.Type.DATE):
            node = node.this
        else:
            break
    if not isinstance(node, exp.Literal):
        return None
    text = node.this
    if kind == "long" and not node.is_string and re.fullmatch(r"\d+", text) \
            and (limit is None or int(text) <= limit):
        return {"op": "literal", "value": f"-{text}" if negative else text,
                "valueType": "long"}
    if kind == "string" and node.is_string and not negative:
        return {"op": "literal", "value": text, "valueType": "string"}
    if kind == "date" and node.is_string and not negative and _DATE.fullmatch(text):
        return {"op": "literal", "value": text, "valueType": "date"}
    return None
