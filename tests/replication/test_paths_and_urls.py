"""The two parsers of replication: a dataset's address, and the file paths served and
written (never outside the dataset directory, whatever the text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.errors import FerryError, UsageError
from dataferry.replication.paths import plain_path
from dataferry.replication.peer import split_url
from dataferry.replication.serve import safe_path

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)


@given(NAME, NAME, st.sampled_from(["", "/proxy", "/a/b"]), st.integers(1, 65535))
def test_an_address_splits_into_the_peer_and_the_dataset(team: str, dataset: str,
                                                         prefix: str, port: int) -> None:
    url = f"http://peer.example:{port}{prefix}/{team}.{dataset}"
    assert split_url(url) == (f"http://peer.example:{port}{prefix}", f"{team}.{dataset}")
    assert split_url(url + "/") == split_url(url)


@pytest.mark.parametrize("url", ["peer:8400/shop.orders", "http://peer:8400/",
                                 "http://peer:8400/shop", "ftp://peer/shop.orders",
                                 "http://peer:8400/shop.orders.v2", "http:///shop.orders"])
def test_an_address_that_names_no_dataset_says_how_to_write_one(url: str) -> None:
    with pytest.raises(UsageError, match=re.escape("http://HOST:PORT/<team>.<dataset>")):
        split_url(url)


PATH_TEXT = st.lists(st.sampled_from([*"ab./\\\x00_-", "..", "%2e", "~"]),
                     max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(PATH_TEXT)
def test_no_path_leads_outside_the_dataset(tmp_path_factory: pytest.TempPathFactory,
                                           text: str) -> None:
    base = tmp_path_factory.getbasetemp() / "paths" / "shop" / "orders"
    (base / "a").mkdir(parents=True, exist_ok=True)
    (base / "a" / "b").write_bytes(b"data")
    (base.parent / "secret").write_bytes(b"secret")
    if plain_path(text):
        assert not Path(text).is_absolute() and ".." not in text.split("/")
    try:
        found = safe_path(base, text)
    except FerryError:
        return
    assert found.resolve().is_relative_to(base.resolve()) and found.read_bytes() == b"data"


def test_a_link_out_of_the_dataset_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "shop" / "orders"
    base.mkdir(parents=True)
    (tmp_path / "secret").write_text("key")
    (base / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(FerryError, match="leads outside the dataset"):
        safe_path(base, "link")
