"""``ferry clone --columns a,b``: of each file only the 1 MiB chunks of its footer and of
those columns' column chunks (and the primary key's), each verified against the signed
chunk list; the local file is a sparse file, and reading another column says it is not
held. ``pull`` stays sparse."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.replication.conftest import Origin, Ran
from tests.replication.tamper import flip_a_byte, lying_peer, on_data_files

ROWS = 150_000


def _wide(start: int, count: int, seed: int) -> pa.Table:
    """Rows whose customer column does not compress: most of each file's bytes."""
    generator = random.Random(seed)
    ids = list(range(start, start + count))
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "customer": [f"{generator.getrandbits(256):064x}" for _ in ids],
                     "amount": [generator.random() for _ in ids]})


def test_a_clone_of_some_columns_fetches_and_holds_only_their_chunks(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    origin.publish(_wide(1, ROWS, 1), "replace")
    full, sparse = tmp_path / "full", tmp_path / "sparse"
    token = {"FERRY_TOKEN": origin.tokens["olga"]}
    with origin.served() as hub:
        whole = json.loads(cli("clone", f"{hub.url}/shop.orders", full, "--json",
                               env=token).out)
        unknown = cli("clone", f"{hub.url}/shop.orders", tmp_path / "nope", "--columns",
                      "amount,colour", env=token)
        assert unknown.code == 1 and "no column colour" in unknown.err, unknown
        cloned = cli("clone", f"{hub.url}/shop.orders", sparse, "--columns", "amount",
                     "--json", env=token)
        assert cloned.code == 0, cloned
        part = json.loads(cloned.out)
        print(f"--columns amount: {part['bytes_fetched']:,} of {whole['bytes_fetched']:,} bytes")
        assert part["bytes_fetched"] < 0.5 * whole["bytes_fetched"], (part, whole)
        head = origin.dataset.head_number() or 0
        files = origin.dataset.active_files(head)
        big = max(files, key=lambda f: f.size)
        held = sparse / "shop" / "orders" / big.path
        assert held.stat().st_size == big.size
        assert held.stat().st_blocks * 512 < big.size / 2  # holes where nothing was fetched
        # the held columns read (id: the primary key comes along), others say they are not
        out = tmp_path / "part.parquet"
        assert cli("export", "shop.orders", out, "--store", sparse).code == 0
        got = pq.read_table(out)
        assert got.column_names == ["id", "amount"]
        expected = origin.dataset.reader(origin.dataset.resolve(None),
                                         ["id", "amount"]).read_all()
        assert sorted(got.to_pylist(), key=lambda r: int(r["id"])) == sorted(
            expected.to_pylist(), key=lambda r: int(r["id"]))
        other = cli("show", "shop.orders", "--store", sparse, "--columns", "customer")
        assert other.code == 1 and "not customer" in other.err and "--columns" in other.err
        assert len(other.err.strip().splitlines()) == 1, other.err
        shown = cli("show", "shop.orders", "--store", sparse, "--json")
        assert shown.code == 0 and set(json.loads(shown.out)["rows"][0]) == {"id", "amount"}
        verified = cli("verify", "--store", sparse, "--json")
        assert verified.code == 0, verified
        assert json.loads(verified.out)["not_held_chunks"] > 0
        # a changed byte in a held chunk is caught
        with held.open("r+b") as handle:
            handle.seek(big.size - 9)
            byte = handle.read(1)
            handle.seek(big.size - 9)
            handle.write(bytes([byte[0] ^ 1]))
        caught = cli("verify", "--store", sparse)
        assert caught.code == 1 and "do not match the signed chunk list" in caught.out, caught
        with held.open("r+b") as handle:
            handle.seek(big.size - 9)
            handle.write(byte)
        # a pull stays sparse, with the same columns
        origin.publish(_wide(ROWS + 1, 20_000, 2))
        pulled = cli("pull", sparse, "--json", env=token)
        assert pulled.code == 0, pulled
        assert json.loads(pulled.out)[0]["versions"] == [head + 1]
        changed = cli("diff", "shop.orders", str(head), str(head + 1), "--store", sparse,
                      "--json")
        assert changed.code == 0, changed
        assert json.loads(changed.out)["added"] == 20_000
    assert cli("verify", "--store", sparse).code == 0
    assert cli("export", "shop.orders", out, "--store", sparse).code == 0
    assert pq.read_table(out).num_rows == ROWS + 20_000
    assert pq.read_table(out).column_names == ["id", "amount"]


def test_a_changed_byte_in_a_fetched_chunk_is_caught_and_the_honest_clone_then_works(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    token = {"FERRY_TOKEN": origin.tokens["olga"]}
    with origin.served() as hub, lying_peer(hub.url) as liar:
        liar.tamper = on_data_files(flip_a_byte)
        lied = cli("clone", f"{liar.url}/shop.orders", sparse, "--columns", "amount",
                   env=token)
        assert lied.code == 1, lied
        assert "does not match its signed chunk list" in lied.err, lied.err
        assert len(lied.err.strip().splitlines()) == 1 and "Traceback" not in lied.err
        parquet = [r for p, r in liar.requests if p.endswith(".parquet")]
        assert parquet and all(r and r.startswith("bytes=") for r in parquet), parquet
        liar.tamper = None
        again = cli("clone", f"{liar.url}/shop.orders", sparse, "--columns", "amount",
                    env=token)
        assert again.code == 0, again
    assert cli("verify", "--store", sparse).code == 0
    shown = json.loads(cli("show", "shop.orders", "--store", sparse, "--json").out)
    assert set(shown["rows"][0]) == {"id", "amount"}


def test_a_rerun_after_a_bad_chunk_fetches_no_verified_chunk_again(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    origin.publish(_wide(1, ROWS, 1), "replace")
    sparse = tmp_path / "sparse"
    token = {"FERRY_TOKEN": origin.tokens["olga"]}
    with origin.served() as hub, lying_peer(hub.url) as liar:
        lied: list[int] = []

        def once_in_a_long_run(path: str, body: bytes) -> bytes:
            if path.endswith(".parquet") and len(body) > 2 << 20 and not lied:
                lied.append(len(liar.requests) - 1)
                return flip_a_byte(body)
            return body

        liar.tamper = once_in_a_long_run
        failed = cli("clone", f"{liar.url}/shop.orders", sparse, "--columns", "customer",
                     env=token)
        assert failed.code == 1 and "signed chunk list" in failed.err, failed.err
        assert lied, "no run of chunks was long enough to lie in"
        done = len(liar.requests)
        verified = {r for i, (p, r) in enumerate(liar.requests)
                    if p.endswith(".parquet") and i != lied[0]}
        liar.tamper = None
        again = cli("clone", f"{liar.url}/shop.orders", sparse, "--columns", "customer",
                    env=token)
        assert again.code == 0, again
        second = {r for p, r in liar.requests[done:] if p.endswith(".parquet")}
        assert second and not second & verified, (second, verified)
    assert cli("verify", "--store", sparse).code == 0
