"""Each JSON Schema pattern (``dataferry.model.patterns``) accepts every value the Python
check it mirrors accepts, in both regex dialects (ECMA-262 as editors and check-jsonschema
match, Python's ``re`` as the jsonschema library does), and refuses the usual mistakes."""

from __future__ import annotations

import re

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.model import patterns
from dataferry.model.lint import _DSN_PASSWORD, _PYTHON_REF, SECRET_REF
from dataferry.model.spec import _check_duration
from dataferry.model.types import TypeParseError, parse_type
from tests.model.test_roundtrip import type_texts

regress = pytest.importorskip("regress")


def matches(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches ``text`` in both dialects (JSON Schema: a search)."""
    ecma = regress.Regex(pattern, flags="u").find(text) is not None
    python = re.search(pattern, text) is not None
    return ecma and python


def matches_either(pattern: str, text: str) -> bool:
    return regress.Regex(pattern, flags="u").find(text) is not None or bool(
        re.search(pattern, text))


def accepts_type(text: str) -> bool:
    try:
        parse_type(text)
    except TypeParseError:
        return False
    return True


def accepts_duration(text: str) -> bool:
    try:
        _check_duration(text)
    except ValueError:
        return False
    return True


def respelled(text: str, cases: list[bool], spaces: list[str]) -> str:
    """``text`` in other letter cases, with whitespace between its tokens."""
    out = []
    for index, char in enumerate(text):
        upper = cases[index % len(cases)] if cases else False
        out.append(char.upper() if upper else char)
        if char in "(<,>):" and spaces:
            out.append(spaces[index % len(spaces)])
    return "".join(out)


near = st.text(alphabet="0123456789smhdwHM ()<>,:_-.abcdefgilnorstu@/${}\n\t", max_size=24)
settings_ = settings(max_examples=300, deadline=None)


@settings_
@given(type_texts, st.lists(st.booleans(), max_size=5), st.lists(
    st.sampled_from(["", " ", "  ", "\t", "\n"]), max_size=3))
def test_every_type_check_accepts_matches(text: str, cases: list[bool], spaces: list[str]) -> None:
    text = respelled(text, cases, spaces)
    assert accepts_type(text)
    assert matches(patterns.COLUMN_TYPE, text), text


@settings_
@given(st.one_of(near, st.sampled_from(["bigint", "varchar(10)", "int", "decimal", "Int64"])))
def test_type_pattern_is_never_stricter(text: str) -> None:
    if accepts_type(text):
        assert matches(patterns.COLUMN_TYPE, text)


@pytest.mark.parametrize("text", ["bigint", "varchar(40)", "integer", "text", "string(x)"])
def test_type_pattern_refuses_sql_names(text: str) -> None:
    assert not matches_either(patterns.COLUMN_TYPE, text)


@settings_
@given(st.one_of(near, st.from_regex(r"[0-9]{1,3}[smhdw]([0-9]{1,3}[smhdw]){0,2}", fullmatch=True)))
def test_duration_pattern_agrees(text: str) -> None:
    if accepts_duration(text):
        assert matches(patterns.DURATION, text)
    # The pattern states the whole rule (in ECMA-262, whose $ is only the end of the text).
    assert (regress.Regex(patterns.DURATION, flags="u").find(text) is not None) == (
        accepts_duration(text))


@settings_
@given(st.one_of(
    st.text(alphabet="*/0123456789,- @adilyhourMONSUN\t", max_size=30),
    st.lists(st.sampled_from(["*", "*/5", "0", "1-5", "MON", "5,35", "L"]), min_size=3,
             max_size=8).map(" ".join),
))
def test_cron_pattern_is_never_stricter(text: str) -> None:
    if croniter.is_valid(text):
        assert matches(patterns.CRON, text), text


@settings_
@given(st.one_of(
    near,
    st.from_regex(r"\$\{(env|file):[^}]{1,10}\}", fullmatch=True),
))
def test_secret_pattern_agrees(text: str) -> None:
    if SECRET_REF.match(text):
        assert matches(patterns.SECRET_REFERENCE, text)


@settings_
@given(st.from_regex(r"[a-zA-Z][a-z+.-]{0,6}://[^/@:]{0,6}(:[^/@]{0,12})?@?[a-z/:@${}]{0,12}",
                     fullmatch=True))
def test_url_password_pattern_never_refuses_what_check_takes(url: str) -> None:
    found = _DSN_PASSWORD.match(url)
    flagged = found is not None and not SECRET_REF.match(found.group(1))
    if matches_either(patterns.URL_WITH_PASSWORD, url):
        assert flagged, url


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@db/x", "mysql://root:pw@h:3306/d",
                                 "HTTPS://a:b@hooks.example/x"])
def test_url_password_pattern_refuses_passwords(url: str) -> None:
    assert matches(patterns.URL_WITH_PASSWORD, url)


@pytest.mark.parametrize("url", ["postgresql://u@db/x", "postgresql://u:${env:PW}@db/x",
                                 "https://hooks.example/x?a=b:c@d", "nats://127.0.0.1:4222"])
def test_url_password_pattern_takes_urls_without_one(url: str) -> None:
    assert not matches_either(patterns.URL_WITH_PASSWORD, url)


@settings_
@given(st.one_of(near, st.from_regex(r"[A-Za-z_][\w.]{0,8}:[A-Za-z_]\w{0,8}", fullmatch=True)))
def test_python_pattern_is_never_stricter(text: str) -> None:
    if _PYTHON_REF.match(text):
        assert matches(patterns.PYTHON_FUNCTION, text)


@settings_
@given(st.lists(st.sampled_from(["a", "..", ".", "", "b.sql", "..x", "\n", "..\n"]),
                min_size=1, max_size=4).map("/".join))
def test_sql_file_pattern_agrees(path: str) -> None:
    outside = path.startswith("/") or ".." in path.split("/")
    if matches_either(patterns.RELATIVE_PATH_OUTSIDE, path):
        assert outside, path
    if outside:
        assert matches(patterns.RELATIVE_PATH_OUTSIDE, path)


@settings_
@given(st.one_of(near, st.sampled_from(["no", "NO", "Yes", "off", "n", "no\n", "nope"])))
def test_boolean_words_are_the_same_for_check_and_schema(text: str) -> None:
    in_python = re.fullmatch(patterns.BOOLEAN_WORD, text) is not None
    assert matches_either(patterns.BOOLEAN_WORD, text) == in_python
