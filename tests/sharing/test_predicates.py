"""File skipping by ``jsonPredicateHints``: a file is skipped only when its statistics
prove no row matches (the client filters rows again, so keeping is always safe)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dataferry.sharing.predicates import may_match, parse_hints


def _stats(low: int, high: int, nulls: int = 0) -> str:
    return json.dumps({"numRecords": 10, "minValues": {"id": low, "name": "b"},
                       "maxValues": {"id": high, "name": "m"}, "nullCount": {"id": nulls}})


def _hint(op: str, value: int | str, kind: str = "int", column: str = "id") -> str:
    return json.dumps({"op": op, "children": [
        {"op": "column", "name": column, "valueType": kind},
        {"op": "literal", "value": str(value), "valueType": kind}]})


def test_files_outside_the_bounds_are_skipped_and_the_others_kept() -> None:
    files = [_stats(0, 99), _stats(100, 199), _stats(200, 299)]
    kept = [f for f in files if may_match(parse_hints(_hint("equal", 250)), f)]
    assert kept == [files[2]]
    assert [may_match(parse_hints(_hint("lessThan", 100)), f) for f in files] == [
        True, False, False]
    assert [may_match(parse_hints(_hint("greaterThanOrEqual", 199)), f) for f in files] == [
        False, True, True]
    both = json.dumps({"op": "or", "children": [json.loads(_hint("equal", 5)),
                                                json.loads(_hint("equal", 250))]})
    assert [may_match(parse_hints(both), f) for f in files] == [True, False, True]
    assert not may_match(parse_hints(_hint("equal", "z", "string", "name")), files[0])


def test_what_is_not_understood_keeps_every_file() -> None:
    for text in (None, "", "not json", "[1]", '{"op": "like"}',
                 _hint("equal", "x", "int"), _hint("equal", 1.5, "double"),
                 json.dumps({"op": "not", "children": [json.loads(_hint("equal", 5))]})):
        assert may_match(parse_hints(text), _stats(0, 9)), text
    assert may_match(parse_hints(_hint("equal", 5)), "{broken")
    assert may_match(parse_hints(_hint("equal", 500)), json.dumps({"numRecords": 3}))


@given(st.integers(-1000, 1000), st.integers(0, 500), st.integers(-1500, 1500),
       st.sampled_from(["equal", "lessThan", "lessThanOrEqual", "greaterThan",
                        "greaterThanOrEqual"]))
def test_a_file_holding_a_matching_row_is_never_skipped(low: int, width: int, value: int,
                                                        op: str) -> None:
    high = low + width
    rows = range(low, high + 1)
    matches = {"equal": value in rows, "lessThan": low < value,
               "lessThanOrEqual": low <= value, "greaterThan": high > value,
               "greaterThanOrEqual": high >= value}[op]
    if matches:
        assert may_match(parse_hints(_hint(op, value)), _stats(low, high))
