from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataferry.model.yamlfile import Document, Mapping, YamlProblem, parse_yaml, position
from dataferry.model.yamlvalues import parse_values


def test_values_remember_where_they_are() -> None:
    doc = parse_yaml("a: 1\nb:\n  c: [x, y]\n  d: {e: f}\n")
    root = doc.value
    assert isinstance(root, Mapping)
    assert position(root.key_marks["b"]) == (2, 1)
    assert position(root["b"].key_marks["d"]) == (4, 3)
    assert [position(m) for m in root["b"]["c"].item_marks] == [(3, 7), (3, 10)]
    assert position(root["b"]["d"].value_marks["e"]) == (4, 10)


def test_yaml_1_2_core_schema() -> None:
    doc = parse_yaml("a: NO\nb: yes\nc: true\nd: 0o17\ne: 0x1f\nf: 1.5e3\ng: ~\nh: '12'\ni: .inf\n")
    assert doc.value == {"a": "NO", "b": "yes", "c": True, "d": 15, "e": 31, "f": 1500.0,
                         "g": None, "h": "12", "i": float("inf")}


def test_duplicate_keys_are_reported_and_first_wins() -> None:
    doc = parse_yaml("a: 1\nb: 2\na: 3\n")
    assert doc.value == {"a": 1, "b": 2}
    assert [(d.key, d.first, d.again) for d in doc.duplicates] == [("a", (1, 1), (3, 1))]


def test_merge_keys() -> None:
    doc = parse_yaml("base: &b {type: int64, nullable: false}\ncol: {<<: *b, nullable: true}\n")
    assert doc.value["col"] == {"type": "int64", "nullable": True}


@pytest.mark.parametrize(
    ("data", "fragment", "line"),
    [
        (b"a:\n\tb: 1\n", "tabs", 2),
        (b"a: 1\n\xff\xfe\n", "not UTF-8", 2),
        (b"a: [1, 2\n", "invalid YAML", 2),
        (b"a: 1\n---\nb: 2\n", "several YAML documents", 2),
        (b"a: !!python/object:os.system x\n", "unsupported YAML tag", 1),
        (b"a: *nowhere\n", "unknown alias", None),
        (b"? [a, b]\n: 1\n", "plain value", 1),
    ],
)
def test_bad_yaml_is_a_clear_problem(data: bytes, fragment: str, line: int | None) -> None:
    with pytest.raises(YamlProblem) as info:
        parse_yaml(data)
    assert fragment in info.value.message
    if line is not None:
        assert info.value.mark is not None and info.value.mark[0] == line


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(YamlProblem, match="alias bomb"):
        parse_yaml("\n".join(lines))


def test_huge_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataferry.model import yamlfile

    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 100)
    with pytest.raises(YamlProblem, match="MiB"):
        parse_yaml(b"a: " + b"x" * 200)


def test_empty_file_is_none() -> None:
    assert parse_yaml(b"").value is None
    assert parse_yaml(b"# only a comment\n").value is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda s: s.encode()))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    try:
        parse_yaml(data)
    except YamlProblem as problem:
        assert problem.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_agrees_with_pyyaml_on_what_it_dumps(value: object) -> None:
    from dataferry.model.export import dump_yaml

    text = dump_yaml(value)
    assert parse_yaml(text).value == value
    assert yaml.safe_load(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30) | st.sampled_from(["NO", "0o17", "0x1F", "1e3", ".inf", "~", "yes",
                                                "null", "+1", "-.5", "1_000", "2026-01-01"]))
def test_strings_survive_a_dump(text: str) -> None:
    from dataferry.model.export import dump_yaml

    assert parse_yaml(dump_yaml({"k": text})).value == {"k": text}


# --- without positions (yamlvalues): what a model is loaded with --------------------

def outcome(parse: Callable[[bytes], Document], data: bytes) -> tuple[str, object]:
    """The values (as plain Python) or the problem, message and position."""
    try:
        return ("values", parse(data).value)
    except YamlProblem as problem:
        return ("problem", (problem.message, problem.mark))


ENTRIES = st.sampled_from([
    "a: 1\n", "b: [x, 'y', \"z\"]\n", "c: {type: decimal(12,2), nullable: false}\n",
    "d:\n  - e: NO\n    f: 0x1f\n", "g: &anchor {h: 1}\n", "i: *anchor\n", "j: {<<: {h: 2}}\n",
    "a: again\n", "k: !!str 12\n", "l: |\n  text\n  more\n", "'<<': quoted\n", "q: ~\n",
    "r: {s: {t: [u, {v: w}]}}\n", "x\u2028y: 1\n", "z: \xe9\n", "# a comment\n", "1: one\n",
    "m: {n: 1, n: 2}\n", "? [m]\n: 1\n",
])
"""Top-level entries of a mapping: valid together, some only for ``parse_yaml``."""
BROKEN = st.sampled_from(["---\n", "n: [1, 2\n", "o:\n\tp: 1\n", "- item\n", "  indented: 1\n"])


@st.composite
def yaml_files(draw: st.DrawFn) -> bytes:
    pieces = draw(st.lists(ENTRIES, max_size=8))
    if pieces and draw(st.integers(0, 4)) == 0:
        pieces.insert(draw(st.integers(0, len(pieces))), draw(BROKEN))
    return "".join(pieces).encode()


@settings(max_examples=500, deadline=None)
@given(yaml_files() | st.binary(max_size=100))
def test_values_without_positions_are_the_same(data: bytes) -> None:
    """The reader a model is loaded with gives what ``parse_yaml`` gives, values or the
    same problem at the same place, for anything (it hands ``parse_yaml`` the files with
    anchors, tags, merge keys, keys given twice and errors)."""
    assert outcome(parse_values, data) == outcome(parse_yaml, data)


def test_values_without_positions_are_plain() -> None:
    doc = parse_values("a: 1\nb:\n  c: [x, y]\n  d: {e: decimal(12,2)}\n")
    assert doc.value == {"a": 1, "b": {"c": ["x", "y"], "d": {"e": "decimal(12,2)"}}}
    assert type(doc.value) is dict and type(doc.value["b"]["c"]) is list
    # ... but a file with anchors (or merge keys, tags, keys twice) is read with them
    doc = parse_values("a: &x {b: 1}\nc: *x\nc: 2\n")
    assert isinstance(doc.value, Mapping)
    assert [(d.key, d.first, d.again) for d in doc.duplicates] == [("c", (2, 1), (3, 1))]


def commas_in_types(text: str) -> list[int]:
    """Reference: the commas inside a type expression's brackets closed on its line,
    found by scanning each one's bracket depth character by character."""
    import re

    found: list[int] = []
    for match in re.finditer(r"(?<![\w.])(?:decimal|map|struct|list)\s*[(<]", text):
        depth, inside = 0, []
        for index in range(match.end() - 1, len(text)):
            char = text[index]
            if char in "(<":
                depth += 1
            elif char in ")>":
                depth -= 1
                if depth == 0:
                    found += inside
                    break
            elif char == "\n":
                break
            elif char == "," and depth > 0:
                inside.append(index)
    return sorted(set(found))


TYPE_EXPRESSIONS = st.recursive(
    st.sampled_from(["int64", "string", "decimal(12,2)", "decimal(12, 2)", "x"]),
    lambda inner: st.one_of(
        inner.map(lambda t: f"list<{t}>"),
        st.tuples(inner, inner).map(lambda p: f"map<{p[0]},{p[1]}>"),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda ts: "struct<" + ", ".join(f"f{i}: {t}" for i, t in enumerate(ts)) + ">")),
    max_leaves=5)
NOISE = st.sampled_from([",", " ", "(", ")", "<", ">", "\n", "{", "}", "xlist<", ".map(", "a:"])


@st.composite
def texts_with_types(draw: st.DrawFn) -> str:
    """Type expressions among brackets, commas and line ends, some cut short."""
    pieces = draw(st.lists(st.one_of(TYPE_EXPRESSIONS, NOISE), max_size=8))
    text = "".join(pieces)
    return text[:draw(st.integers(0, len(text)))] + draw(st.text(",)>x\n", max_size=3))


@settings(max_examples=1000, deadline=None)
@example("map<x>,)")
@example("decimal(12,2),list<map<a,b>>, struct<a: decimal(1,0)")
@given(texts_with_types())
def test_type_commas_are_found_as_by_their_brackets(text: str) -> None:
    from dataferry.model.yamlfile import protect_type_commas

    protected, stand_in = protect_type_commas(text)
    swapped = [i for i, (a, b) in enumerate(zip(text, protected, strict=True)) if a != b]
    assert swapped == commas_in_types(text)
    assert (stand_in is None) == (not swapped)
