"""A chain of peers: origin (a model's ``ferry serve``) -> a clone served with
``--anonymous`` -> a clone of that clone; every copy verifies and reads like the origin."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from deltalake import DeltaTable, QueryBuilder

from tests.replication.conftest import Origin, Ran, orders, serve_store


def _rows(cli: Callable[..., Ran], store: Path, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / f"export-{store.name}.parquet"
    ran = cli("export", "shop.orders", out, "--store", store)
    assert ran.code == 0, ran
    return sorted(pq.read_table(out).to_pylist(), key=lambda row: int(row["id"]))


def test_origin_to_clone_to_clone_of_the_clone_all_verify(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dataset_id = origin.dataset.genesis().dataset_id
    with origin.served() as hub:
        cloned = cli("clone", f"{hub.url}/shop.orders", first, "--token", origin.tokens["olga"])
        assert cloned.code == 0, cloned
        assert f"dataset id {dataset_id} (trusted on first use" in cloned.out
        assert "versions 1..2" in cloned.out
        assert cli("verify", "--store", first).code == 0
        logged = json.loads(cli("log", "shop.orders", "--store", first, "--json").out)
        assert sorted(v["version"] for v in logged) == [1, 2]
        with serve_store(first, "--anonymous") as middle:
            again = cli("clone", f"{middle.url}/shop.orders", second, "--key", dataset_id,
                        "--json")
            assert again.code == 0, again
            assert json.loads(again.out)["trust"] == "pinned"
            # replication only: no API, no other dataset, nothing outside the store
            for path in ("/api/v1/datasets", "/api/v1/replication/shop.nope/genesis",
                         "/api/v1/replication/..%2fshop.orders/genesis"):
                assert httpx.get(middle.url + path).status_code == 404, path
            # a merge (deletion vectors) and an append at the origin, then pull down the chain
            origin.publish(orders(10, 20).set_column(2, "amount", [[-1.0] * 20]), "merge")
            origin.publish(orders(4001, 50))
            pulled = cli("pull", first, "--json", env={"FERRY_TOKEN": origin.tokens["olga"]})
            assert pulled.code == 0, pulled
            assert json.loads(pulled.out)[0]["versions"] == [3, 4]
            assert json.loads(cli("pull", second, "--json").out)[0]["versions"] == [3, 4]
    for store in (first, second):
        verified = cli("verify", "--store", store)
        assert verified.code == 0, verified
    listed = json.loads(cli("datasets", "--store", second, "--json").out)
    assert [(d["ref"], d["version"]) for d in listed] == [("shop.orders", 4)], listed
    changed = cli("diff", "shop.orders", "2", "3", "--store", second, "--json")
    assert changed.code == 0 and '"changed": 20' in changed.out.replace("\n", ""), changed
    old = cli("show", "shop.orders@1", "--store", second, "--json")
    assert old.code == 0 and '"version": 1' in old.out, old
    # and the clone of the clone is the same Delta table, deletion vectors and all
    table = DeltaTable(second / "shop" / "orders")
    assert table.version() == DeltaTable(origin.dataset.path).version()
    counted = QueryBuilder().register("t", table).execute("select count(*) as n from t")
    assert counted.read_all().column("n")[0].as_py() == 4050
    expected = sorted(origin.dataset.reader(origin.dataset.resolve(None)).read_all().to_pylist(),
                      key=lambda row: int(row["id"]))
    assert _rows(cli, second, tmp_path) == expected
    assert len(expected) == 4050 and expected[9]["amount"] == -1.0


def test_a_clone_of_a_store_whose_old_versions_gc_dropped_starts_at_its_checkpoint(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    from dataferry.store.gc import collect

    origin.publish(orders(4001, 10))
    origin.publish(orders(10, 5).set_column(2, "amount", [[-2.0] * 5]), "merge")
    collect(origin.dataset, origin.context.store.keys, keep=2)  # versions 3 and 4 stay
    clone = tmp_path / "clone"
    with serve_store(origin.context.store.root, "--anonymous") as peer:
        cloned = cli("clone", f"{peer.url}/shop.orders", clone, "--json")
    assert cloned.code == 0, cloned
    assert json.loads(cloned.out)["versions"] == [3, 4]
    verified = cli("verify", "--store", clone)
    assert verified.code == 0, verified
    expected = sorted(origin.dataset.reader(origin.dataset.resolve(None)).read_all().to_pylist(),
                      key=lambda row: int(row["id"]))
    assert _rows(cli, clone, tmp_path) == expected
