"""The Delta Sharing endpoints in process: who sees what, the error shape, pagination,
versions, derived files and signed URLs (HEAD, Range, forged, expired)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from dataferry.cli.main import invoke
from dataferry.cli.run_commands import _context
from dataferry.engine.context import RunContext
from dataferry.server.app import create_app
from dataferry.sharing.files import table_files
from dataferry.sharing.tokens import ShareTokens
from tests.conftest import FakeClock, write_files
from tests.outside_tools import run_tool, tool_venv
from tests.server.live import uvicorn_in_thread
from tests.sharing.partner_model import make_partner_model, sink_rows

BASE = "/delta-sharing"
TABLE = BASE + "/shares/{share}/schemas/shop/tables/orders"
SCRIPT = Path(__file__).with_name("client_script.py")


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_partner_model(tmp_path_factory.mktemp("sharing") / "model")


@pytest.fixture
def context(model_root: Path) -> Iterator[RunContext]:
    context = _context(model_root)
    assert isinstance(context, RunContext)
    yield context
    context.close()


@pytest.fixture
def client(context: RunContext, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(context, now=clock)) as client:
        yield client


def _token(context: RunContext, clock: FakeClock, consumer: str) -> dict[str, str]:
    issued = ShareTokens(context.metadata, clock).create(consumer, timedelta(days=1),
                                                          actor="test")
    return {"Authorization": f"Bearer {issued.secret}"}


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_token_sees_its_own_share_only(client: TestClient, context: RunContext,
                                         clock: FakeClock) -> None:
    mirror = _token(context, clock, "shop.mirror")
    shares = client.get(BASE + "/shares", headers=mirror).json()
    assert [s["name"] for s in shares["items"]] == ["shop__mirror"]
    assert client.get(BASE + "/shares/shop__mirror/schemas", headers=mirror).json()[
        "items"] == [{"name": "shop", "share": "shop__mirror"}]
    other = client.get(BASE + "/shares/shop__partner/all-tables", headers=mirror)
    assert other.status_code == 403 and other.json()["errorCode"] == "PERMISSION_DENIED"
    query = client.post(TABLE.format(share="shop__partner") + "/query", json={},
                        headers=mirror)
    assert query.status_code == 403
    missing = client.get(BASE + "/shares/nobody__here", headers=mirror)
    assert missing.status_code == 404 and missing.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    assert client.get(BASE + "/shares").status_code == 401
    bad = client.get(BASE + "/shares", headers={"Authorization": "Bearer fy_nope"})
    assert bad.status_code == 401 and set(bad.json()) == {"errorCode", "message"}
    ShareTokens(context.metadata, clock).revoke("shop.mirror", actor="test")
    assert client.get(BASE + "/shares", headers=mirror).status_code == 401


def test_bad_input_gets_the_protocol_error_never_a_500(client: TestClient,
                                                       context: RunContext,
                                                       clock: FakeClock) -> None:
    token = _token(context, clock, "shop.partner")
    table = TABLE.format(share="shop__partner")
    for params in ({"maxResults": "x"}, {"maxResults": "0"}, {"pageToken": "%%%"},
                   {"pageToken": "OTk5"}):
        answer = client.get(BASE + "/shares", params=params, headers=token)
        assert answer.status_code == 400, params
        assert answer.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    for body in (b"not json", b"[1]", b'{"version": "x"}', b'{"version": -1}',
                 b'{"limitHint": true}', b'{"startingVersion": 1}'):
        answer = client.post(table + "/query", content=body, headers=token)
        assert answer.status_code == 400, body
    assert client.post(table + "/query", json={"version": 99}, headers=token).status_code == 404
    assert client.get(BASE + "/shares/shop__partner/schemas/shop/tables/nope/metadata",
                      headers=token).status_code == 404


def test_pagination_walks_every_item_once(client: TestClient, context: RunContext,
                                          clock: FakeClock) -> None:
    token = _token(context, clock, "shop.mirror")
    tables = BASE + "/shares/shop__mirror/all-tables"
    first = client.get(tables, params={"maxResults": 1}, headers=token).json()
    assert [t["name"] for t in first["items"]] == ["by_country"]
    second = client.get(tables, params={"maxResults": 1, "pageToken": first["nextPageToken"]},
                        headers=token).json()
    assert [t["name"] for t in second["items"]] == ["orders"]
    assert "nextPageToken" not in second
    shares = client.get(BASE + "/shares", params={"maxResults": 1}, headers=token).json()
    assert len(shares["items"]) == 1 and "nextPageToken" not in shares


def test_timestamps_pick_the_version_current_then(client: TestClient, context: RunContext,
                                                  clock: FakeClock) -> None:
    token = _token(context, clock, "shop.partner")
    table = TABLE.format(share="shop__partner")
    dataset = context.store.dataset("shop.orders")
    first, second = (dataset.version(n).manifest.created_at for n in (1, 2))
    for at, expected in ((first, "1"), (second, "2")):
        answer = client.post(table + "/query", json={"timestamp": at}, headers=token)
        assert answer.headers["Delta-Table-Version"] == expected
    early = client.post(table + "/query", json={"timestamp": "2001-01-01T00:00:00Z"},
                        headers=token)
    assert early.status_code == 400 and "before the first kept version" in early.text
    assert client.post(table + "/query", json={"timestamp": "soon"},
                       headers=token).status_code == 400
    starting = client.get(table + "/version", params={"startingTimestamp": first},
                          headers=token)
    assert starting.headers["Delta-Table-Version"] == "1"
    late = client.get(table + "/version", params={"startingTimestamp": "2999-01-01T00:00:00Z"},
                      headers=token)
    assert late.status_code == 400


def test_version_metadata_and_query_serve_the_consumers_rows(
        client: TestClient, context: RunContext, clock: FakeClock, model_root: Path) -> None:
    token = _token(context, clock, "shop.partner")
    table = TABLE.format(share="shop__partner")
    head = client.head(table + "/version", headers=token)
    assert head.headers["Delta-Table-Version"] == "2"
    meta = client.get(table + "/metadata", headers=token)
    assert meta.headers["Delta-Table-Version"] == "2"
    protocol, metadata = _lines(meta.text)
    assert protocol == {"protocol": {"minReaderVersion": 1}}
    fields = json.loads(metadata["metaData"]["schemaString"])["fields"]
    assert [f["name"] for f in fields] == ["id", "amount", "email"]

    answer = client.post(table + "/query", json={}, headers=token)
    files = [line["file"] for line in _lines(answer.text)[2:]]
    assert files and all(f["url"].startswith("http://testserver/delta-sharing/files/")
                         for f in files)
    path = files[0]["url"].removeprefix("http://testserver")
    whole = client.get(path)  # no bearer token: the signed URL is the key
    assert whole.status_code == 200 and int(whole.headers["content-length"]) == files[0]["size"]
    local = model_root / "served.parquet"
    local.write_bytes(whole.content)
    rows = sorted(pq.read_table(local).to_pylist(), key=lambda r: r["id"])
    assert [{**r, "amount": float(r["amount"])} for r in rows] == sink_rows(model_root,
                                                                             "partner")
    assert client.head(path).headers["content-length"] == str(files[0]["size"])
    part = client.get(path, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"PAR1"

    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert client.get(forged).status_code == 403
    clock.advance(2 * 3600)
    assert client.get(path).status_code == 403


def test_every_query_is_audited(client: TestClient, context: RunContext,
                                clock: FakeClock) -> None:
    token = _token(context, clock, "shop.mirror")
    client.post(TABLE.format(share="shop__mirror") + "/query", json={"version": 1},
                headers=token)
    from dataferry.metadata import AuditLog

    entries = [e for e in AuditLog(context.metadata).entries()
               if e.action == "share.query" and e.actor == "share:shop.mirror"]
    assert entries and entries[-1].detail is not None and entries[-1].detail["version"] == 1


def test_a_derived_file_changed_on_disk_is_derived_again(
        client: TestClient, context: RunContext, clock: FakeClock, model_root: Path) -> None:
    token = _token(context, clock, "shop.partner")
    table = TABLE.format(share="shop__partner")
    client.post(table + "/query", json={"version": 1}, headers=token)
    cached = list((context.store.root / "_sharing_cache").rglob("000000000001/*.parquet"))
    assert len(cached) == 1
    cached[0].write_bytes(b"PAR1 not what was derived PAR1")
    answer = client.post(table + "/query", json={"version": 1}, headers=token)
    url = _lines(answer.text)[2]["file"]["url"].removeprefix("http://testserver")
    local = model_root / "again.parquet"
    local.write_bytes(client.get(url).content)
    assert pq.read_table(local).num_rows == 20


def test_a_whole_need_is_served_from_the_stored_files_when_they_hold_its_rows(
        context: RunContext) -> None:
    _, _, mirror = context.index.consumers["shop.mirror"]
    _, _, partner = context.index.consumers["shop.partner"]
    dataset = context.store.dataset("shop.orders")
    first = table_files(context, "shop.mirror", mirror.datasets[0], dataset.version(1))
    stored = {str(Path(p).relative_to(context.store.root)) for p in
              dataset.file_paths(dataset.version(1))}
    assert {f.relative for f in first.files} == stored
    derived = table_files(context, "shop.partner", partner.datasets[0], dataset.version(1))
    assert all(f.relative.startswith("_sharing_cache/") for f in derived.files)


UNSIGNED = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      items:
        table: items
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          code: {type: uint32}
          at: {type: timestamp}
consumers:
  whole:
    sink: {kind: sqlite, path: out/whole.db}
    datasets: [shop.items]
"""


def test_columns_stored_in_another_type_are_served_as_declared(
        tmp_path: Path, clock: FakeClock) -> None:
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/shop/shop.yaml": UNSIGNED})
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table items (id integer primary key, code integer, at text)")
        db.executemany("insert into items values (?, ?, ?)", [
            (1, 4_000_000_000, "2026-01-01 10:00:00"), (2, 7, None)])
    db.close()
    assert invoke(["run", "--model", str(root)]) == 0
    context = _context(root)
    assert isinstance(context, RunContext)
    try:
        with TestClient(create_app(context, now=clock)) as client:
            token = _token(context, clock, "shop.whole")
            answer = client.post(BASE + "/shares/shop__whole/schemas/shop/tables/items/query",
                                 json={}, headers=token)
            url = _lines(answer.text)[2]["file"]["url"].removeprefix("http://testserver")
            local = tmp_path / "items.parquet"
            local.write_bytes(client.get(url).content)
            schema = json.loads(_lines(answer.text)[1]["metaData"]["schemaString"])
            ntz = _lines(client.get(
                BASE + "/shares/shop__whole/schemas/shop/tables/items/metadata",
                headers={**token, "delta-sharing-capabilities":
                         "responseformat=delta;readerfeatures=timestampntz"}).text)
        # the official client reads it too (it refuses timestamp_ntz in this format)
        profile = tmp_path / "whole.share"
        with uvicorn_in_thread(create_app(context, now=clock)) as base:
            assert invoke(["share", "create", "shop.whole", "--endpoint", base, "--out",
                           str(profile), "--model", str(root)]) == 0
            python = tool_venv("delta-sharing", ["delta-sharing"]) / "python"
            got = json.loads(run_tool(python, str(SCRIPT), str(profile),
                                      "shop__whole.shop.items"))
    finally:
        context.close()
    table = pq.read_table(local)
    assert table.schema.field("code").type == pa.uint32()
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "code": 4_000_000_000, "at": datetime(2026, 1, 1, 10)},
        {"id": 2, "code": 7, "at": None}]
    assert "timestamp_ntz" not in json.dumps(schema)
    assert got["all"] == [{"id": 1, "code": 4_000_000_000,
                           "at": int(datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp())},
                          {"id": 2, "code": 7, "at": None}]
    # in delta format too: uint32 widened to long, `at` announced as timestamp_ntz
    assert got["delta"] == got["all"]
    assert ntz[0]["protocol"]["deltaProtocol"]["readerFeatures"] == ["timestampNtz"]
    types = {f["name"]: f["type"] for f in json.loads(
        ntz[1]["metaData"]["deltaMetadata"]["schemaString"])["fields"]}
    assert types == {"id": "long", "code": "long", "at": "timestamp_ntz"}


def test_a_change_feed_asks_for_versions_it_can_give(client: TestClient, context: RunContext,
                                                     clock: FakeClock) -> None:
    token = _token(context, clock, "shop.partner")
    changes = TABLE.format(share="shop__partner") + "/changes"
    for params in ({}, {"startingVersion": "x"}, {"startingVersion": "2", "endingVersion": "1"},
                   {"startingVersion": "7"}, {"startingTimestamp": "yesterday"}):
        answer = client.get(changes, params=params, headers=token)
        assert answer.status_code == 400, params
        assert answer.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    fine = client.get(changes, params={"startingVersion": "2"}, headers=token)
    assert fine.status_code == 200
    actions = _lines(fine.text)[2:]
    assert [next(iter(a)) for a in actions] == ["cdf"]


def test_a_file_url_that_is_not_ours_gets_403(client: TestClient) -> None:
    for token in ("nothing", "a.b", "%C3%A9.%C3%A9", "x" * 500):
        answer = client.get(BASE + "/files/" + token)
        assert answer.status_code == 403, token
        assert answer.json()["errorCode"] == "PERMISSION_DENIED"


def test_any_paging_parameters_get_200_or_400(client: TestClient, context: RunContext,
                                              clock: FakeClock) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    token = _token(context, clock, "shop.mirror")
    texts = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30)

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(texts, texts)
    def check(max_results: str, page_token: str) -> None:
        answer = client.get(BASE + "/shares/shop__mirror/all-tables", headers=token,
                            params={"maxResults": max_results, "pageToken": page_token})
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400:
            assert answer.json()["errorCode"] == "INVALID_PARAMETER_VALUE"

    check()


def test_any_query_body_gets_an_answer_never_a_500(client: TestClient, context: RunContext,
                                                   clock: FakeClock) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    token = _token(context, clock, "shop.mirror")
    values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) \
        | st.lists(st.integers(), max_size=2)
    bodies = st.fixed_dictionaries({}, optional={
        "version": values, "timestamp": values, "limitHint": values,
        "jsonPredicateHints": values, "predicateHints": values})

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(bodies)
    def check(body: dict[str, object]) -> None:
        answer = client.post(TABLE.format(share="shop__mirror") + "/query", headers=token,
                             content=json.dumps(body).encode())
        assert answer.status_code in (200, 400, 404), (body, answer.text)
        if answer.status_code != 200:
            assert set(answer.json()) == {"errorCode", "message"}

    check()


def test_the_delta_response_format_wraps_delta_actions(
        client: TestClient, context: RunContext, clock: FakeClock) -> None:
    token = _token(context, clock, "shop.partner")
    table = TABLE.format(share="shop__partner")
    delta = {**token, "delta-sharing-capabilities":
             "responseformat=delta;readerfeatures=deletionvectors,timestampntz"}
    meta = client.get(table + "/metadata", headers=delta)
    assert meta.status_code == 200, meta.text
    assert meta.headers["delta-sharing-capabilities"] == "responseformat=delta"
    protocol, metadata = _lines(meta.text)
    assert protocol == {"protocol": {"deltaProtocol": {"minReaderVersion": 1,
                                                       "minWriterVersion": 2}}}
    assert metadata["metaData"]["version"] == 2
    assert metadata["metaData"]["deltaMetadata"]["format"] == {"provider": "parquet",
                                                               "options": {}}
    answer = client.post(table + "/query", json={"version": 1}, headers=delta)
    plain = client.post(table + "/query", json={"version": 1}, headers=token)
    files, parquet = _lines(answer.text)[2:], _lines(plain.text)[2:]
    assert len(files) == len(parquet) >= 1
    for line, same in zip(files, parquet, strict=True):
        add = line["file"]["deltaSingleAction"]["add"]
        assert add["path"].startswith("http://testserver/delta-sharing/files/")
        assert add["size"] == same["file"]["size"] and add["dataChange"] is True
        assert json.loads(add["stats"]) == json.loads(same["file"]["stats"])
        assert line["file"]["version"] == 1
        fetched = client.get(add["path"].removeprefix("http://testserver"))
        assert fetched.status_code == 200 and len(fetched.content) == add["size"]
    # parquet stays the answer when a client accepts both; an unknown format is a 400
    both = client.get(table + "/metadata", headers={
        **token, "delta-sharing-capabilities": "responseformat=delta,parquet"})
    assert both.headers["delta-sharing-capabilities"] == "responseformat=parquet"
    odd = client.get(table + "/metadata", headers={
        **token, "delta-sharing-capabilities": "responseformat=iceberg"})
    assert odd.status_code == 400 and odd.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert "responseformat=delta" in odd.json()["message"]


def test_sql_predicate_hints_skip_the_files_their_statistics_rule_out(
        client: TestClient, context: RunContext, clock: FakeClock) -> None:
    token = _token(context, clock, "shop.mirror")
    table = TABLE.format(share="shop__mirror")

    def served(body: dict[str, Any]) -> int:
        answer = client.post(table + "/query", json={"version": 1, **body}, headers=token)
        assert answer.status_code == 200, answer.text
        return len(_lines(answer.text)) - 2

    assert served({}) == 1  # version 1: one stored file, ids 1 to 40, countries de and fr
    assert served({"predicateHints": ["id > 40"]}) == 0
    assert served({"predicateHints": ["id >= 40", "country = 'de'"]}) == 1
    assert served({"predicateHints": ["country = 'zz' OR id < 1"]}) == 0
    assert served({"predicateHints": ["amount > 1000"]}) == 1  # decimal: not understood
    assert served({"predicateHints": ["id > 40 )("]}) == 1  # not SQL: kept
    hint = json.dumps({"op": "equal", "children": [
        {"op": "column", "name": "id", "valueType": "int"},
        {"op": "literal", "value": "7", "valueType": "int"}]})
    assert served({"jsonPredicateHints": hint, "predicateHints": ["id = 7"]}) == 1
    assert served({"jsonPredicateHints": hint, "predicateHints": ["id > 40"]}) == 0
    from dataferry.metadata import AuditLog

    last = [e for e in AuditLog(context.metadata).entries() if e.action == "share.query"][-1]
    assert last.detail is not None and last.detail["skipped"] == 1
