"""The replication endpoints of ``ferry serve``: who may clone (403 with the reason,
audited), files with HEAD and Range (206, 416), paths outside the dataset refused, the
head's long-poll; and ``ferry serve --store`` refusing to start without --anonymous."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.replication.conftest import Origin, Ran, orders

API = "/api/v1/replication/shop.orders"


def test_who_may_clone_and_the_audit_log(origin: Origin, cli: Callable[..., Ran],
                                         tmp_path: Path) -> None:
    with origin.served() as hub:
        for user in ("root", "alice", "olga"):  # admin, owner, a consumer taking it whole
            answer = httpx.get(f"{hub.url}{API}/genesis",
                               headers={"Authorization": f"Bearer {origin.tokens[user]}"})
            assert answer.status_code == 200, (user, answer.text)
        for user, reason in [("bea", "(bi.report) receives only part of it"),
                             ("vic", "may not clone shop.orders")]:
            answer = httpx.get(f"{hub.url}{API}/manifests",
                               headers={"Authorization": f"Bearer {origin.tokens[user]}"})
            assert answer.status_code == 403 and reason in answer.json()["error"]["message"]
        assert httpx.get(f"{hub.url}{API}/genesis").status_code == 401
        forged = cli("clone", f"{hub.url}/shop.orders", tmp_path / "nobody", "--token",
                     "fy_" + "x" * 44)
        assert forged.code == 1 and "the token is not valid" in forged.err, forged
        refused = cli("clone", f"{hub.url}/shop.orders", tmp_path / "bea",
                      "--token", origin.tokens["bea"])
        assert refused.code == 1 and refused.err.count("\n") == 1, refused
        assert f"peer {hub.url} refused shop.orders: bea may not clone" in refused.err
        assert origin.tokens["bea"] not in refused.err
        assert not (tmp_path / "bea" / "shop").exists()
        assert cli("clone", f"{hub.url}/shop.orders", tmp_path / "olga",
                   "--token", origin.tokens["olga"]).code == 0
    audit = json.loads(cli("audit", "--json", "--model", origin.root).out)
    fetches = [(e["actor"], e["outcome"]) for e in audit if e["action"] == "replication.fetch"]
    assert ("olga", "success") in fetches and ("bea", "denied") in fetches
    assert ("vic", "denied") in fetches


def test_files_with_head_and_range_and_no_way_out(origin: Origin) -> None:
    entry = origin.dataset.version(1).manifest.files[0]
    data = (origin.dataset.path / entry.path).read_bytes()
    headers = {"Authorization": f"Bearer {origin.tokens['olga']}"}
    with origin.served() as hub:
        url = f"{hub.url}{API}/files/{entry.path}"
        head = httpx.head(url, headers=headers)
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
        assert head.headers["accept-ranges"] == "bytes"
        part = httpx.get(url, headers={**headers, "Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == data[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
        past = httpx.get(url, headers={**headers, "Range": f"bytes={len(data) + 5}-"})
        assert past.status_code == 416
        connection = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
        for path in ("%2e%2e/%2e%2e/ferry.yaml", "../../ferry.yaml", "_sig/.lock",
                     "..%2f..%2fferry.yaml"):
            connection.request("GET", f"{API}/files/{path}", headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status in (400, 404), (path, answer.status)
            assert b"ecosystem" not in body
        connection.close()


def test_head_answers_as_soon_as_a_version_is_published(origin: Origin) -> None:
    headers = {"Authorization": f"Bearer {origin.tokens['olga']}"}
    with origin.served() as hub:
        now = httpx.get(f"{hub.url}{API}/head", headers=headers).json()
        assert now["version"] == 2
        threading.Timer(1.0, lambda: origin.publish(orders(9001, 10))).start()
        started = time.monotonic()
        waited = httpx.get(f"{hub.url}{API}/head", params={"after": 2, "wait": 30},
                           headers=headers, timeout=60).json()
        assert waited["version"] == 3 and time.monotonic() - started < 15


def test_serving_a_store_without_a_model_needs_anonymous(
        origin: Origin, cli: Callable[..., Ran]) -> None:
    refused = cli("serve", "--store", origin.context.store.root, "--port", "1")
    assert refused.code == 2, refused
    assert "no users to check a token against: add --anonymous" in refused.err
