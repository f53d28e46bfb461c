"""The catalog search's index gives exactly what scanning every dataset's text gives:
the same datasets, in the same order, with the same team filter and pages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.engine.context import RunContext
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.server import catalog
from dataferry.server.auth import Auth
from dataferry.server.catalog_search import SearchIndex
from dataferry.store.objects import Location
from dataferry.store.store import Store
from tests.conftest import write_files
from tests.server.conftest import PASSWORD, bearer

# Letters with tricky lower cases (final sigma, dotted capital I, sharp s, Kelvin sign),
# separators, and characters str.split() does or does not treat as whitespace.
ALPHABET = ("abcxyzABCXYZ019._-/ ÉéßẞİıΣσςΟΔK\u212aé\u0301😀"
            "\n\t\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000"
            "\u200b\x00")
SMALL = "abAB \n"
"""Few letters: a long word's three-letter pieces are then often all in a text that
does not hold the word."""
TEAMS = ["t1", "t2", "t3"]


def scan(texts: Sequence[str], teams: Sequence[str], search: str | None,
         team: str | None) -> list[int]:
    """The search as it was before the index: every word a substring of the text."""
    hits = [i for i in range(len(texts)) if team is None or teams[i] == team]
    for word in (search or "").lower().split():
        hits = [i for i in hits if word in texts[i]]
    return hits


@st.composite
def catalogs(draw: st.DrawFn, alphabet: str) -> tuple[list[str], list[str]]:
    """Texts as the catalog builds them: parts joined by new lines, in lower case."""
    count = draw(st.integers(0, 30))
    texts = ["\n".join(draw(st.lists(st.text(alphabet, max_size=40), min_size=1,
                                      max_size=4))).lower() for _ in range(count)]
    return texts, [draw(st.sampled_from(TEAMS)) for _ in range(count)]


@st.composite
def searches(draw: st.DrawFn, texts: Sequence[str], alphabet: str = ALPHABET) -> str:
    """Mostly pieces of the texts (in any case), sometimes anything at all."""
    words = []
    for _ in range(draw(st.integers(0, 3))):
        from_texts: bool = draw(st.booleans())
        if texts and from_texts:
            text = draw(st.sampled_from(texts))
            start = draw(st.integers(0, len(text)))
            piece = text[start:start + draw(st.integers(0, 8))]
            words.append(piece.upper() if draw(st.booleans()) else piece)
        else:
            words.append(draw(st.text(alphabet, max_size=10)))
    return draw(st.sampled_from([" ", "  ", "\t", "\u3000"])).join(words)


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_the_index_finds_what_a_scan_finds(data: st.DataObject) -> None:
    alphabet = data.draw(st.sampled_from([ALPHABET, SMALL]))
    texts, teams = data.draw(catalogs(alphabet))
    index = SearchIndex(texts, teams)
    for _ in range(5):
        search = data.draw(st.none() | searches(texts, alphabet))
        team = data.draw(st.none() | st.sampled_from([*TEAMS, "t4"]))
        assert index.find(search, team).tolist() == scan(texts, teams, search, team)


def test_long_words_are_checked_not_just_their_three_letter_pieces() -> None:
    # "abcd" has the pieces "abc" and "bcd", as has "abcxbcd", which does not hold it
    texts = ["abcxbcd", "xabcdx", "bcd abc", "abcd"]
    index = SearchIndex(texts, ["t"] * 4)
    assert index.find("abcd").tolist() == [1, 3]
    assert index.find("ABC BCD").tolist() == [0, 1, 2, 3]
    assert index.find("cd ab", "t").tolist() == [0, 1, 2, 3]
    assert index.find("abcd", "u").tolist() == []


def test_many_matching_tokens_are_gathered_in_one_pass() -> None:
    # tokens held by one dataset (refs), by a few (c0..c36) and by all (id)
    texts = [f"t{i % 3}.d{i}\nid\nc{i % 37}" for i in range(2000)]
    teams = [f"t{i % 3}" for i in range(2000)]
    index = SearchIndex(texts, teams)
    for search in ("d1", "d12", "d1 c3", "t1.d4", "c", "d", "i", "1", "c1 d1 id", "",
                   "d1 nothing"):
        for team in (None, "t1"):
            assert index.find(search, team).tolist() == scan(texts, teams, search, team)


# --- through the catalog: a model on disk, pages, teams -------------------------------

DESCRIPTIONS = ["Orders of the shop, one row per order", "ΟΔΟΣ and İstanbul Straße",
                "orders\u3000by day", "Kelvin \u212a temperatures", "", "emoji 😀 rows",
                "sales.orders_daily copy", "Ünïcode ünïcode"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelIndex, Store]:
    files = {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n"}
    for t, team in enumerate(["sales", "sales_eu", "shop"]):
        lines = [f"team: {team}", "zone: eu", f"owners: [{team}@acme.example]",
                 "sources:", "  db:", "    kind: sqlite", "    path: x.db", "    datasets:"]
        for d in range(12):
            description = DESCRIPTIONS[(t * 12 + d) % len(DESCRIPTIONS)]
            columns = ", ".join(f"{name}: string" for name in
                                ["id", f"order_{d}", f"customer_id_{t}", "created_on"][:1 + d % 4])
            lines += [f"      {'orders' if d == 0 else f'd{d}_orders'}:",
                      f"        description: {json.dumps(description, ensure_ascii=False)}",
                      f"        columns: {{{columns}}}"]
        files[f"teams/{team}/team.yaml"] = "\n".join(lines) + "\n"
    root = write_files(tmp_path_factory.mktemp("search") / "model", files)
    loaded = load_model(root)
    assert loaded.ecosystem is not None and loaded.report.ok, loaded.report.sorted()
    return ModelIndex(loaded.ecosystem), Store.for_model(root, loaded.ecosystem)


def catalog_texts(index: ModelIndex) -> tuple[list[str], list[str], list[str]]:
    refs = sorted(index.datasets)
    texts = ["\n".join([ref, index.datasets[ref].spec.description or "",
                        *index.datasets[ref].spec.columns]).lower() for ref in refs]
    return refs, texts, [index.datasets[ref].team for ref in refs]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_catalog_pages_are_the_scans_pages(model: tuple[ModelIndex, Store],
                                           data: st.DataObject) -> None:
    index, store = model
    refs, texts, teams = catalog_texts(index)
    search = data.draw(st.none() | searches(texts))
    team = data.draw(st.none() | st.sampled_from(["sales", "sales_eu", "shop", "sale"]))
    offset, limit = data.draw(st.integers(0, 40)), data.draw(st.integers(1, 40))
    page, total = catalog.list_datasets(index, store, search, team, offset, limit)
    expected = [refs[i] for i in scan(texts, teams, search, team)]
    assert total == len(expected)
    assert [item.ref for item in page] == expected[offset:offset + limit]


def test_catalog_search_finds_unicode_and_case(model: tuple[ModelIndex, Store]) -> None:
    index, store = model

    def found(search: str, team: str | None = None) -> list[str]:
        return [item.ref for item in catalog.list_datasets(index, store, search, team, 0, 100)[0]]

    def described(number: int, team: str | None = None) -> list[str]:
        return sorted(ref for ref, entry in index.datasets.items()
                      if entry.spec.description == DESCRIPTIONS[number]
                      and team in (None, entry.team))

    assert found("ΟΔΟΣ") == found("οδος") == described(1) != []  # final sigma both ways
    assert found("İSTANBUL STRAẞE") == found("i\u0307stanbul straße") == described(1)
    assert found("istanbul") == []  # "İ" is "i" with a dot above in lower case
    assert found("kelvin K", "shop") == described(3, "shop") != []  # "\u212a" is "k"
    assert found("by day") == described(2)  # an ideographic space separates words too
    assert found("😀 ROWS") == described(5)
    assert found("CREATED_ON", "sales_eu") == sorted(
        ref for ref, entry in index.datasets.items()
        if entry.team == "sales_eu" and "created_on" in entry.spec.columns) != []
    # a ref, and the descriptions that mention it, in the catalog's order
    assert found("sales.orders") == sorted({"sales.orders", *described(6)})


def test_prepare_builds_the_index_once(model: tuple[ModelIndex, Store]) -> None:
    index, _ = model
    catalog.prepare(index)
    built = catalog._listing(index)
    catalog.prepare(index)
    assert catalog._listing(index) is built


# --- the API route: on the event loop when it can, in the thread pool otherwise ---------


def test_the_route_lists_alike_whether_the_index_is_built_or_not(
        client: TestClient, auth: Auth, context: RunContext) -> None:
    auth.accounts.add("ana", "member", PASSWORD, actor="test")
    headers = bearer(auth.tokens.create_api(auth.accounts.get("ana"), "t", actor="test",
                                            expires_in=timedelta(days=1)).secret)
    assert catalog.lists_in_memory(context.index, context.store)  # create_app built it
    built = client.get("/api/v1/datasets", params={"search": "ORDER"}, headers=headers)
    assert built.status_code == 200, built.text
    assert [i["ref"] for i in built.json()["items"]] != []
    fresh = context.with_model(load_model(context.root))  # as a reload would, unprepared
    client.app.state.context = fresh  # type: ignore[attr-defined]
    assert not catalog.lists_in_memory(fresh.index, fresh.store)
    unbuilt = client.get("/api/v1/datasets", params={"search": "ORDER"}, headers=headers)
    assert unbuilt.json() == built.json()
    assert catalog.lists_in_memory(fresh.index, fresh.store)  # that request built it
    in_a_bucket = Store(context.store.root, context.store.home, Location.parse("s3://b/p"))
    assert not catalog.lists_in_memory(fresh.index, in_a_bucket)  # mirrors: network
