"""Signed file URLs: what is signed comes back until it expires; nothing else gets through."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dataferry.sharing.signing import sign, signing_key, verify

KEY = b"k" * 32
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
paths = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=80)


@given(paths)
def test_a_signed_path_comes_back_until_it_expires(path: str) -> None:
    token = sign(KEY, path, NOW + timedelta(hours=1))
    assert verify(KEY, token, NOW) == path
    assert verify(KEY, token, NOW + timedelta(hours=1)) is None
    assert verify(b"x" * 32, token, NOW) is None


@given(paths, st.integers(min_value=0), st.characters(whitelist_categories=["Ll", "Nd"]))
def test_any_change_to_a_token_is_refused(path: str, position: int, char: str) -> None:
    token = sign(KEY, path, NOW + timedelta(hours=1))
    at = position % len(token)
    changed = token[:at] + char + token[at + 1:]
    if changed != token:
        assert verify(KEY, changed, NOW) in (None, path)  # never another path
        assert verify(KEY, changed, NOW) is None or changed.split(".")[0] == token.split(".")[0]


@given(st.text(max_size=200))
def test_garbage_is_refused_never_raised(text: str) -> None:
    assert verify(KEY, text, NOW) is None


def test_the_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = signing_key(tmp_path)
    assert len(first) == 32 and signing_key(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "keys" / "sharing.key").stat().st_mode) == 0o600
