"""``ferry clone --version N``: every manifest up to N verified, but only the files
version N reads; older versions say they are not held, and ``pull`` goes on from N."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

from tests.replication.conftest import Origin, Ran, orders


def _rows(cli: Callable[..., Ran], store: Path, tmp_path: Path, at: str = "") -> list[int]:
    out = tmp_path / f"export-{store.name}{at}.parquet"
    ran = cli("export", f"shop.orders{at}", out, "--store", store)
    assert ran.code == 0, ran
    return sorted(int(row["id"]) for row in pq.read_table(out).to_pylist())


def _origin_rows(origin: Origin, number: int | None = None) -> list[int]:
    dataset = origin.dataset
    return sorted(int(r["id"]) for r in dataset.reader(dataset.resolve(number)).read_all()
                  .to_pylist())


def test_a_clone_of_version_n_holds_only_the_files_n_reads(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    origin.publish(orders(5001, 4000), "replace")  # version 3: versions 1-2's files unused
    origin.publish(orders(5001, 10).set_column(2, "amount", [[-1.0] * 10]), "merge")  # 4
    sparse, at4 = tmp_path / "sparse", tmp_path / "at4"
    with origin.served() as hub:
        token = {"FERRY_TOKEN": origin.tokens["olga"]}
        cloned = cli("clone", f"{hub.url}/shop.orders", sparse, "--version", "3", "--json",
                     env=token)
        assert cloned.code == 0, cloned
        result = json.loads(cloned.out)
        assert result["versions"] == [1, 2, 3] and result["files_fetched"] == 1, result
        dataset = origin.dataset
        old = {f.path for n in (1, 2) for f in dataset.version(n).manifest.files}
        new = {f.path for f in dataset.version(3).manifest.files}
        here = sparse / "shop" / "orders"
        assert not any((here / path).exists() for path in old)
        assert all((here / path).is_file() for path in new)
        whole = cli("clone", f"{hub.url}/shop.orders", tmp_path / "full", "--json", env=token)
        unused = sum(f.size for n in (1, 2) for f in dataset.version(n).manifest.files)
        assert result["bytes_fetched"] <= json.loads(whole.out)["bytes_fetched"] - unused
        # what it holds reads and verifies, with deltalake too
        assert _rows(cli, sparse, tmp_path) == _origin_rows(origin, 3)
        assert sorted(DeltaTable(here).to_pyarrow_table().column("id").to_pylist()) == (
            _origin_rows(origin, 3))
        verified = cli("verify", "--store", sparse)
        assert verified.code == 0, verified
        assert "2 file(s) of older versions not held here" in verified.out, verified.out
        logged = json.loads(cli("log", "shop.orders", "--store", sparse, "--json").out)
        assert sorted(v["version"] for v in logged) == [1, 2, 3]
        # an older version: one line saying the clone is sparse, and what to run
        older = cli("show", "shop.orders@1", "--store", sparse)
        assert older.code == 1, older
        assert "sparse clone" in older.err and "--version 1" in older.err, older.err
        assert "Traceback" not in older.err and len(older.err.strip().splitlines()) == 1
        assert cli("export", "shop.orders@2", tmp_path / "x.parquet", "--store",
                   sparse).code == 1
        diffed = cli("diff", "shop.orders", "2", "3", "--store", sparse)
        assert diffed.code == 1 and "sparse clone" in diffed.err, diffed
        # pull goes on from version 3 as usual: version 4's deletion vector only
        pulled = cli("pull", sparse, "--json", env=token)
        assert pulled.code == 0, pulled
        assert json.loads(pulled.out)[0]["versions"] == [4]
        # a clone of version 4: version 3's file, version 4's and its deletion vector
        at = cli("clone", f"{hub.url}/shop.orders", at4, "--version", "4", "--json",
                 env=token)
        assert at.code == 0, at
        active = dataset.active_files(4)
        vectors = {str(f.deletion_vector["file"]) for f in active if f.deletion_vector}
        assert vectors and json.loads(at.out)["files_fetched"] == len(active) + len(vectors)
        assert not any((at4 / "shop" / "orders" / path).exists() for path in old)
        # both at once: version 3's files, of them the chunks of amount and the key
        both = tmp_path / "both"
        assert cli("clone", f"{hub.url}/shop.orders", both, "--version", "3", "--columns",
                   "amount", env=token).code == 0
    mixed = cli("verify", "--store", both, "--json")
    assert mixed.code == 0 and json.loads(mixed.out)["not_held_files"] == 2, mixed
    out = tmp_path / "both.parquet"
    assert cli("export", "shop.orders", out, "--store", both).code == 0
    assert pq.read_table(out).column_names == ["id", "amount"]
    assert sorted(pq.read_table(out).column("id").to_pylist()) == _origin_rows(origin, 3)
    for store in (sparse, at4):
        assert cli("verify", "--store", store).code == 0
        assert _rows(cli, store, tmp_path) == _origin_rows(origin)
        amounts = pq.read_table(
            tmp_path / f"export-{store.name}.parquet").column("amount").to_pylist()
        assert amounts.count(-1.0) == 10
