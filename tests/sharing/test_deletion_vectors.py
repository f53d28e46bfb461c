"""Deletion vectors passed through in ``responseformat=delta`` to clients that declare the
``deletionvectors`` reader feature: the stored files as they are, each vector behind a
signed URL of its own (storage type ``p``); every other client gets the deleted rows
rewritten out. (The official client reading them with its Delta kernel: test_client.py.)"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from dataferry.cli.main import invoke
from dataferry.cli.run_commands import _context
from dataferry.engine.context import RunContext
from dataferry.metadata import AuditLog
from dataferry.server.app import create_app
from dataferry.sharing.files import ServedFile, ServedVector
from dataferry.sharing.routes import _limited
from dataferry.sharing.tokens import ShareTokens
from dataferry.store import deletion_vectors
from tests.conftest import FakeClock, write_files
from tests.outside_tools import run_tool, tool_venv
from tests.server.live import uvicorn_in_thread
from tests.sharing.partner_model import make_partner_model, sink_rows

MIRROR = "/delta-sharing/shares/shop__mirror/schemas/shop/tables/orders"
PARTNER = "/delta-sharing/shares/shop__partner/schemas/shop/tables/orders"
READS_VECTORS = "responseformat=delta;readerfeatures=deletionvectors,timestampntz"
SCRIPT = Path(__file__).with_name("client_script.py")


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_partner_model(tmp_path_factory.mktemp("vectors") / "model")


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


def _headers(context: RunContext, clock: FakeClock, consumer: str,
             capabilities: str | None = None) -> dict[str, str]:
    issued = ShareTokens(context.metadata, clock).create(consumer, timedelta(days=1),
                                                          actor="test")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    if capabilities is not None:
        headers["delta-sharing-capabilities"] = capabilities
    return headers


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _local(url: str) -> str:
    """A signed URL of an answer as the test client asks for it (the query kept: it is the
    ``X-Amz-Signature`` delta-kernel looks for, which the server ignores)."""
    return url.removeprefix("http://testserver")


def test_a_reader_of_deletion_vectors_gets_the_stored_files_and_their_vectors(
        client: TestClient, context: RunContext, clock: FakeClock, model_root: Path) -> None:
    headers = _headers(context, clock, "shop.mirror", READS_VECTORS)
    answer = client.post(MIRROR + "/query", json={}, headers=headers)
    assert answer.status_code == 200, answer.text
    protocol, metadata, *files = _lines(answer.text)
    assert protocol == {"protocol": {"deltaProtocol": {
        "minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["deletionVectors"],
        "writerFeatures": ["deletionVectors"]}}}
    assert metadata["metaData"]["deltaMetadata"]["configuration"] == {
        "delta.enableDeletionVectors": "true"}
    dataset = context.store.dataset("shop.orders")
    stored = {e.hash: e for e in dataset.active_files(2)}
    assert {f["file"]["id"] for f in files} == set(stored)  # the store's own files
    with_vector = [f["file"] for f in files if "deletionVector" in
                   f["file"]["deltaSingleAction"]["add"]]
    assert len(with_vector) == 1
    line = with_vector[0]
    entry = stored[line["id"]]
    assert entry.deletion_vector is not None
    descriptor = line["deltaSingleAction"]["add"]["deletionVector"]
    assert descriptor["storageType"] == "p"
    assert (descriptor["offset"], descriptor["sizeInBytes"], descriptor["cardinality"]) == (
        entry.deletion_vector["offset"], entry.deletion_vector["size"], 2)
    assert line["deletionVectorFileId"] == entry.deletion_vector["hash"]
    # the vector's URL is signed like a file's, works without the bearer token and by range
    url = _local(descriptor["pathOrInlineDv"])
    assert url.startswith("/delta-sharing/files/") and "X-Amz-Signature=" in url
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.content == (dataset.path / entry.deletion_vector["file"]).read_bytes()
    start = descriptor["offset"] + 4  # the vector's bytes follow their 4-byte size
    end = start + descriptor["sizeInBytes"] - 1
    part = client.get(url, headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206
    deleted = sorted(deletion_vectors.deserialize(part.content))
    # the vector deletes exactly the rows of the stored file that are not in the version
    base = model_root / "stored.parquet"
    base.write_bytes(client.get(_local(line["deltaSingleAction"]["add"]["path"])).content)
    old = pq.read_table(base).column("id").to_pylist()
    live = {r["id"] for r in sink_rows(model_root, "mirror")}
    assert sorted(old[i] for i in deleted) == [3, 5]  # 3 updated (now in the new file)
    assert 3 in live and 5 not in live
    forged = url.replace("/files/", "/files/A", 1)
    assert client.get(forged).status_code == 403
    clock.advance(2 * 3600)
    assert client.get(url).status_code == 403


def test_the_metadata_of_a_reader_of_vectors_announces_the_feature(
        client: TestClient, context: RunContext, clock: FakeClock) -> None:
    headers = _headers(context, clock, "shop.mirror", READS_VECTORS)
    head, _ = _lines(client.get(MIRROR + "/metadata", headers=headers).text)
    assert head["protocol"]["deltaProtocol"]["readerFeatures"] == ["deletionVectors"]
    # a version without vectors needs no feature
    first = client.post(MIRROR + "/query", json={"version": 1}, headers=headers)
    assert _lines(first.text)[0] == {"protocol": {"deltaProtocol": {
        "minReaderVersion": 1, "minWriterVersion": 2}}}


@pytest.mark.parametrize("capabilities", [
    "responseformat=delta;readerfeatures=timestampntz", "responseformat=delta",
    "responseformat=parquet", None])
def test_a_client_not_declaring_vectors_gets_the_deleted_rows_rewritten_out(
        client: TestClient, context: RunContext, clock: FakeClock, model_root: Path,
        capabilities: str | None) -> None:
    headers = _headers(context, clock, "shop.mirror", capabilities)
    protocol, _, *files = _lines(client.post(MIRROR + "/query", json={},
                                             headers=headers).text)
    assert "deletionVectors" not in json.dumps(protocol)
    assert len(files) == 1
    line = files[0]["file"] if "file" in files[0] else files[0]
    url = line["url"] if "url" in line else line["deltaSingleAction"]["add"]["path"]
    assert "deletionVector" not in json.dumps(line)
    local = model_root / "rewritten.parquet"
    local.write_bytes(client.get(_local(url)).content)
    rows = sorted(pq.read_table(local).to_pylist(), key=lambda r: r["id"])
    assert [{**r, "amount": float(r["amount"])} for r in rows] == sink_rows(model_root,
                                                                             "mirror")


def test_a_need_that_is_not_whole_is_derived_even_for_a_reader_of_vectors(
        client: TestClient, context: RunContext, clock: FakeClock) -> None:
    headers = _headers(context, clock, "shop.partner", READS_VECTORS)
    protocol, _, *files = _lines(client.post(PARTNER + "/query", json={},
                                             headers=headers).text)
    assert "deletionVectors" not in json.dumps(protocol)
    assert len(files) == 1 and "deletionVector" not in json.dumps(files)


def test_a_limit_counts_the_live_rows_of_a_file_with_a_vector() -> None:
    vector = ServedVector("t/deletion_vector_x.bin", 1, 36, 2, "h")
    old = ServedFile("t/old.parquet", 10, json.dumps({"numRecords": 40}), "a", vector)
    new = ServedFile("t/new.parquet", 10, json.dumps({"numRecords": 2}), "b")
    assert old.live_rows == 38
    assert _limited([old, new], 39) == [old, new]  # 38 live rows are not 39
    assert _limited([old, new], 38) == [old]


EVENTS = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      events:
        table: events
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          at: {type: timestamp}
          note: {type: string}
consumers:
  whole:
    sink: {kind: sqlite, path: out/whole.db}
    datasets: [shop.events]
"""


def test_vectors_and_timestamp_ntz_together_read_by_the_official_client(
        tmp_path: Path, clock: FakeClock) -> None:
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/shop/shop.yaml": EVENTS})
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table events (id integer primary key, at text, note text)")
        db.executemany("insert into events values (?, ?, ?)", [
            (i, f"2026-01-{i:02d} 10:00:00", f"n{i}") for i in range(1, 21)])
    db.close()
    assert invoke(["run", "--model", str(root)]) == 0
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("update events set note = 'changed' where id = 4")
        db.execute("delete from events where id = 9")
    db.close()
    assert invoke(["run", "--model", str(root)]) == 0
    context = _context(root)
    assert isinstance(context, RunContext)
    try:
        assert any(e.deletion_vector for e in
                   context.store.dataset("shop.events").active_files(2))
        profile = tmp_path / "whole.share"
        with uvicorn_in_thread(create_app(context, now=clock)) as base:
            headers = _headers(context, clock, "shop.whole", READS_VECTORS)
            head = httpx.get(base + "/delta-sharing/shares/shop__whole/schemas/shop/tables/"
                             "events/metadata", headers=headers).text
            assert invoke(["share", "create", "shop.whole", "--endpoint", base, "--out",
                           str(profile), "--model", str(root)]) == 0
            python = tool_venv("delta-sharing", ["delta-sharing"]) / "python"
            got = json.loads(run_tool(python, str(SCRIPT), str(profile),
                                      "shop__whole.shop.events"))
        passed = [e for e in AuditLog(context.metadata).entries()
                  if e.action == "share.query" and e.detail
                  and e.detail.get("deletion_vectors")]
    finally:
        context.close()
    assert _lines(head)[0]["protocol"]["deltaProtocol"]["readerFeatures"] == [
        "deletionVectors", "timestampNtz"]
    assert passed  # the client's delta-format reads of version 2 got the vector
    assert len(got["all"]) == 19 and got["delta"] == got["all"]
    assert next(r for r in got["delta"] if r["id"] == 4)["note"] == "changed"
    assert 9 not in {r["id"] for r in got["delta"]}
