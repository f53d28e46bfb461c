"""A store in a bucket served to others: replication (clone, pull of versions another
machine published) and Delta Sharing with pre-signed S3 URLs for the store's files."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from dataferry.cli.main import invoke
from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from dataferry.sharing.tokens import ShareTokens
from dataferry.store.publish import publish
from dataferry.store.store import Store
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.conftest import FakeClock, write_files
from tests.replication.conftest import BI, OPS, SHOP, Ran, cli, orders  # noqa: F401
from tests.server.conftest import FAST, PASSWORD
from tests.server.live import ferry_serve
from tests.sharing.partner_model import TEAM as PARTNER_TEAM
from tests.store.test_s3_store import S3Server, bucket, s3_server  # noqa: F401


def _model(root: Path, name: str, teams: dict[str, str]) -> Path:
    return write_files(root, {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nstore: s3://{name}/lake\n",
        **teams})


def _publish(root: Path, start: int, count: int, mode: str = "append") -> int:
    context = RunContext.from_loaded(load_model(root))
    try:
        dataset = context.store.dataset("shop.orders")
        published = publish(dataset, context.index.datasets["shop.orders"].spec,
                            orders(start, count), keys=context.store.keys,
                            mode=mode)  # type: ignore[arg-type]
        return int(published.version)
    finally:
        context.close()


def test_a_hub_on_a_bucket_serves_clones_and_what_other_hubs_publish(
        tmp_path: Path, bucket: str, cli: Callable[..., Ran]) -> None:  # noqa: F811
    teams = {"teams/shop/shop.yaml": SHOP, "teams/ops/ops.yaml": OPS, "teams/bi/bi.yaml": BI}
    hub = _model(tmp_path / "hub", bucket, teams)
    context = RunContext.from_loaded(load_model(hub))
    auth = Auth.for_context(context, FAST)
    auth.accounts.add("olga", "member", PASSWORD, actor="test", teams=["ops"])
    token = auth.tokens.create_api(auth.accounts.get("olga"), "clone", actor="test",
                                   expires_in=timedelta(days=1)).secret
    context.close()
    assert _publish(hub, 1, 300, "replace") == 1
    other = _model(tmp_path / "other", bucket, teams)  # a second hub: same bucket and key
    shutil.copytree(hub / ".ferry" / "keys", other / ".ferry" / "keys")

    clone = tmp_path / "clone"
    with ferry_serve(hub) as served:
        cloned = cli("clone", f"{served.url}/shop.orders", clone, "--token", token)
        assert cloned.code == 0, cloned
        assert _publish(other, 301, 100) == 2  # never through this hub
        pulled = cli("pull", clone, "--json", env={"FERRY_TOKEN": token})
        assert pulled.code == 0, pulled
        assert json.loads(pulled.out)[0]["versions"] == [2]
        # A long-poll of the head answers when another hub publishes, through the bucket.
        later = threading.Timer(1.0, _publish, (other, 401, 10))
        later.start()
        started = time.monotonic()
        head = httpx.get(f"{served.url}/api/v1/replication/shop.orders/head",
                         params={"after": 2, "wait": 20}, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
        later.join()
        assert head.status_code == 200 and head.json()["version"] == 3, head.text
        assert time.monotonic() - started < 10
    verified = cli("verify", "--store", clone)
    assert verified.code == 0, verified
    copy = Store(clone.resolve(), tmp_path / "home").dataset("shop.orders")
    assert copy.reader(copy.resolve(2)).read_all().num_rows == 400


def test_delta_sharing_hands_out_presigned_bucket_urls_for_store_files(
        tmp_path: Path, bucket: str, s3_server: S3Server, clock: FakeClock) -> None:  # noqa: F811
    root = _model(tmp_path / "model", bucket, {"teams/shop/shop.yaml": PARTNER_TEAM})
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table orders (id integer primary key, amount text, email text, "
                   "country text)")
        db.executemany("insert into orders values (?, ?, ?, ?)", [
            (i, f"{i * 1.5:.2f}", f"u{i}@x.example", "de" if i % 2 else "fr")
            for i in range(1, 41)])
    db.close()
    assert invoke(["run", "--model", str(root)]) == 0
    context = RunContext.from_loaded(load_model(root))
    try:
        issued = ShareTokens(context.metadata, clock).create("shop.mirror", timedelta(days=1),
                                                              actor="test")
        headers = {"Authorization": f"Bearer {issued.secret}"}
        with TestClient(create_app(context, now=clock)) as client:
            answer = client.post("/delta-sharing/shares/shop__mirror/schemas/shop/tables/"
                                 "by_country/query", json={}, headers=headers)
            assert answer.status_code == 200, answer.text
            files = [json.loads(line)["file"] for line in answer.text.splitlines()
                     if "file" in json.loads(line)]
            assert len(files) == 1
            url = files[0]["url"]
            assert url.startswith(f"{s3_server.endpoint}/{bucket}/lake/shop/by_country/")
            assert "X-Amz-Signature=" in url and "ferry-secret" not in url
            table = pq.read_table(io.BytesIO(httpx.get(url).content))  # no token: the URL
            assert sorted(table.column("country").to_pylist()) == ["de", "fr"]
            assert "X-Amz-Expires=3600" in url  # as long as the server's own URLs
            # A file derived for a consumer (columns, where, mask) exists only on this
            # server: its URL stays the server's own, signed by it.
            partner = ShareTokens(context.metadata, clock).create(
                "shop.partner", timedelta(days=1), actor="test")
            derived = client.post(
                "/delta-sharing/shares/shop__partner/schemas/shop/tables/orders/query",
                json={}, headers={"Authorization": f"Bearer {partner.secret}"})
            urls = [json.loads(line)["file"]["url"] for line in derived.text.splitlines()
                    if "file" in json.loads(line)]
            assert urls and all(u.startswith("http://testserver/delta-sharing/files/")
                                for u in urls)
        report = VerifyReport()
        verify_dataset(context.store.dataset("shop.by_country"), report)
        assert report.ok, report.problems
    finally:
        context.close()
