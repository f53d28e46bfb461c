"""The store in an S3 bucket (``store: s3://bucket/prefix``), against moto's S3 server.

Each "machine" is a model directory of its own (its own home, so its own mirror) with
the same ferry.yaml and the same team key, sharing one bucket.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.store.compact import compact
from dataferry.store.diff import diff_versions
from dataferry.store.gc import collect
from dataferry.store.store import Store
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.conftest import Result, write_files
from tests.store.conftest import TEAM, StoreFixture, orders, publish_computed

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "ferry-test", "AWS_SECRET_ACCESS_KEY": "ferry-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on a free port, for the whole session."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto's S3 server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket; the AWS variables point this process at the server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    name = f"ferry-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def machine(tmp_path: Path, name: str, bucket: str, keys_from: Path | None = None) -> StoreFixture:
    """A model whose store is ``s3://<bucket>/lake``, with a home of its own."""
    root = write_files(tmp_path / name, {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nstore: s3://{bucket}/lake\n",
        "teams/shop/shop.yaml": TEAM,
    })
    if keys_from is not None:
        shutil.copytree(keys_from / ".ferry" / "keys", root / ".ferry" / "keys")
    loaded = load_model(root)
    assert loaded.ecosystem is not None and loaded.report.findings == []
    return StoreFixture(root, Store.for_model(root, loaded.ecosystem),
                        ModelIndex(loaded.ecosystem))


def keys_in(s3: S3Server, bucket: str, prefix: str = "lake/shop/orders/") -> list[str]:
    response = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"][len(prefix):] for item in response.get("Contents", ()))


def ids(fixture: StoreFixture, version: int | None = None) -> list[int]:
    dataset = fixture.dataset("shop.orders")
    table = dataset.reader(dataset.resolve(version)).read_all()
    return sorted(table.column("id").to_pylist())


def verified(fixture: StoreFixture) -> VerifyReport:
    report = VerifyReport()
    verify_dataset(fixture.dataset("shop.orders"), report)
    return report


def test_publish_time_travel_diff_and_verify_in_a_bucket(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    assert one.store.location == f"s3://{bucket}/lake"
    one.publish("shop.orders", orders(range(1, 4)))
    one.publish("shop.orders", orders(range(4, 6)), mode="append")
    one.publish("shop.orders", orders([2, 9], amount="7.00"), mode="merge")

    stored = keys_in(s3_server, bucket)
    assert {"_sig/genesis.json", "_sig/m/000000000003.json", "_sig/m/000000000003.sig",
            "_delta_log/00000000000000000002.json"} <= set(stored)
    assert not [k for k in stored if k.startswith("_sig/staged/")]  # committed, cleaned up
    assert any(k.startswith("deletion_vector_") for k in stored)  # merge-on-read there too

    # Another machine, with nothing but the bucket: the same versions, rows and proofs.
    two = machine(tmp_path, "two", bucket)
    assert two.store.refs() == ["shop.orders"]
    assert ids(two) == [1, 2, 3, 4, 5, 9]
    assert ids(two, 1) == [1, 2, 3]
    assert ids(two, 2) == [1, 2, 3, 4, 5]
    changes = diff_versions(two.dataset("shop.orders"), 2, 3)
    assert (changes.added, changes.removed, changes.changed) == (1, 0, 1)
    assert verified(two).ok, verified(two).problems


def test_verify_names_the_altered_object(tmp_path: Path, bucket: str,
                                         s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(1, 4)))
    data = next(k for k in keys_in(s3_server, bucket) if k.endswith(".parquet"))
    client = s3_server.client()
    key = f"lake/shop/orders/{data}"
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    # The machine that published has the file cached: it is fetched again all the same.
    problems = verified(one).problems
    assert [(p.version, p.file) for p in problems] == [(1, f"s3://{bucket}/{key}")]
    assert "does not match its hash" in problems[0].problem


def test_a_second_machine_sees_new_versions_and_gc_from_another(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    for start in (0, 10, 20):
        one.publish("shop.orders", orders(range(start, start + 3)), mode="append")
    two = machine(tmp_path, "two", bucket, keys_from=one.root)
    assert ids(two) == [0, 1, 2, 10, 11, 12, 20, 21, 22]

    result = collect(one.dataset("shop.orders"), one.store.keys, keep=1)
    assert result.dropped_versions == [1, 2]
    stored = keys_in(s3_server, bucket)
    assert "_sig/checkpoint.json" in stored
    assert not [k for k in stored if k.startswith("_sig/m/00000000000" + "1")]
    assert [k for k in stored if k.startswith("_sig/m/")] == [
        "_sig/m/000000000003.json", "_sig/m/000000000003.sig"]

    # The other machine follows: its mirror drops what the bucket dropped.
    dataset = two.dataset("shop.orders")
    assert dataset.version_numbers() == [3]
    assert ids(two) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert verified(two).ok, verified(two).problems
    two.publish("shop.orders", orders([30]), mode="append")
    assert ids(one) == [0, 1, 2, 10, 11, 12, 20, 21, 22, 30]
    assert verified(one).ok, verified(one).problems


RACER = """
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.store.publish import publish
from dataferry.store.store import Store

root = Path(sys.argv[1])
loaded = load_model(root)
store = Store.for_model(root, loaded.ecosystem)
spec = ModelIndex(loaded.ecosystem).datasets["shop.orders"].spec
first = int(sys.argv[2])
ids = list(range(first, first + 3))
table = pa.table({
    "id": pa.array(ids, pa.int64()),
    "customer": [f"c{i}" for i in ids],
    "amount": pa.array([Decimal("1.50")] * 3, pa.decimal128(12, 2)),
    "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("us", "UTC")),
})
try:
    print(publish(store.dataset("shop.orders"), spec, table, keys=store.keys,
                  mode="append").version)
except Exception as error:
    print(error)
    sys.exit(1)
"""


def _racers(tmp_path: Path, s3: S3Server, roots: list[Path], env: dict[str, str],
            starts: list[int]) -> list[subprocess.CompletedProcess[str]]:
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    environment = {**os.environ, **s3.env, **env}
    processes = [subprocess.Popen([sys.executable, str(script), str(root), str(start)],
                                  env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for root, start in zip(roots, starts, strict=True)]
    release = env.get("FERRY_PAUSE_UNTIL")
    if release:  # all wait just before the manifest's conditional put: let them go in turn
        deadline = time.monotonic() + 60
        waiting: list[Path] = []
        while len(waiting) < len(roots):
            exited = [p.poll() is not None for p in processes]
            assert time.monotonic() < deadline and not any(exited), [
                p.communicate() for p in processes]
            time.sleep(0.05)
            waiting = list(Path(release).parent.glob(Path(release).name + ".*"))
        # One after the other: each has built the same next version and puts its manifest
        # only after the one before has put its own. Released at once they would race
        # inside moto, whose conditional put is a check then a put without a lock (real S3,
        # MinIO and R2 decide it atomically): both could win there, which says nothing of ours.
        for process in processes:
            Path(f"{release}.{process.pid}.go").touch()
            while process.poll() is None and len(processes) > 1:
                assert time.monotonic() < deadline + 60
                time.sleep(0.05)
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_two_processes_racing_for_one_version_cannot_both_win(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(3)))
    two = machine(tmp_path, "two", bucket, keys_from=one.root)
    release = tmp_path / "go"
    results = _racers(tmp_path, s3_server, [one.root, two.root],
                      {"FERRY_PAUSE_AT": "before-manifest-put",
                       "FERRY_PAUSE_UNTIL": str(release)}, [100, 200])
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], results
    winner = next(r for r in results if r.returncode == 0)
    loser = next(r for r in results if r.returncode == 1)
    assert winner.stdout.strip() == "2"
    assert "another writer published version 2 first" in loser.stdout
    assert "nothing of this attempt was published" in loser.stdout

    won = 100 if results[0].returncode == 0 else 200
    assert ids(one) == [0, 1, 2, won, won + 1, won + 2]
    assert ids(two) == ids(one)
    assert verified(one).ok and verified(two).ok

    # The loser runs again and publishes on top; gc later removes what it uploaded.
    lost_root = two.root if won == 100 else one.root
    again = _racers(tmp_path, s3_server, [lost_root], {}, [300])
    assert again[0].returncode == 0 and again[0].stdout.strip() == "3", again
    before = {k for k in keys_in(s3_server, bucket) if k.endswith(".parquet")}
    collect(one.dataset("shop.orders"), one.store.keys, keep=None, orphan_grace=0)
    after = {k for k in keys_in(s3_server, bucket) if k.endswith(".parquet")}
    assert len(before - after) == 1  # the losing attempt's file
    assert not [k for k in keys_in(s3_server, bucket) if k.startswith("_sig/staged/")]
    assert verified(two).ok
    assert ids(two) == sorted([0, 1, 2, won, won + 1, won + 2, 300, 301, 302])


def test_a_writer_killed_after_its_manifest_put_is_completed_by_the_next_reader(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(3)))
    results = _racers(tmp_path, s3_server, [one.root], {"FERRY_CRASH_AT": "after-manifest-put"},
                      [10])
    assert results[0].returncode == -9, results
    stored = keys_in(s3_server, bucket)
    assert "_sig/m/000000000002.json" in stored and "_sig/m/000000000002.sig" not in stored

    two = machine(tmp_path, "two", bucket, keys_from=one.root)
    assert ids(two) == [0, 1, 2, 10, 11, 12]  # committed: finished from the manifest's metadata
    stored = keys_in(s3_server, bucket)
    assert {"_sig/m/000000000002.sig", "_delta_log/00000000000000000001.json"} <= set(stored)
    assert verified(two).ok, verified(two).problems
    assert ids(one) == [0, 1, 2, 10, 11, 12]
    one.publish("shop.orders", orders([20]), mode="append")
    assert ids(two) == [0, 1, 2, 10, 11, 12, 20]


def test_a_reader_racing_a_slow_writer_that_finishes_completes_the_version(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    """A reader lists the bucket between a writer's manifest put and its Delta commit; the
    writer then finishes and deletes its staged copy before the reader fetches it. The
    reader takes the commit from the Delta log (it raised "cannot be completed" before,
    and that stopped a ``ferry up`` of the many-schedulers chaos test)."""
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(3)))
    results = _racers(tmp_path, s3_server, [one.root], {"FERRY_CRASH_AT": "after-manifest-put"},
                      [10])
    assert results[0].returncode == -9, results
    two = machine(tmp_path, "two", bucket, keys_from=one.root)
    remote = two.store.dataset("shop.orders", pull=False).remote
    assert remote is not None
    listing = remote.listing()  # what the reader saw: the manifest, no commit, no signature
    assert "_sig/m/000000000002.sig" not in listing
    [staged] = [rel for rel in listing if rel.startswith("_sig/staged/")]
    client = s3_server.client()
    body = client.get_object(Bucket=bucket, Key=f"lake/shop/orders/{staged}")["Body"].read()
    # ...the writer finishes: its commit in the Delta log, its staged copy deleted.
    client.put_object(Bucket=bucket, Key="lake/shop/orders/_delta_log/00000000000000000001.json",
                      Body=body)
    client.delete_object(Bucket=bucket, Key=f"lake/shop/orders/{staged}")
    for rel, info in listing.items():
        if rel.startswith(("_sig/", "_delta_log/")) and not rel.startswith("_sig/staged/"):
            remote._fetch(rel, info)
    remote._finish_commit(2, listing)
    assert ids(two) == [0, 1, 2, 10, 11, 12]
    assert verified(two).ok, verified(two).problems


def test_threads_downloading_one_object_at_once_all_get_it(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    """The worker threads of one ``ferry up`` pull one dataset's mirror at once (the chaos
    test's transforms failed with "cannot download ...: FileNotFoundError")."""
    one = machine(tmp_path, "one", bucket)
    s3_server.client().put_object(Bucket=bucket, Key="lake/x.bin", Body=b"x" * 100_000)
    objects = one.store.objects
    assert objects is not None
    target = tmp_path / "mirror" / "x.bin"
    errors: list[BaseException] = []

    def fetch() -> None:
        for _ in range(15):
            try:
                objects.download("lake/x.bin", target)
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() == b"x" * 100_000
    assert [p.name for p in target.parent.iterdir()] == ["x.bin"]  # no temp file left


def test_a_writer_killed_before_its_manifest_put_leaves_nothing_visible(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(3)))
    results = _racers(tmp_path, s3_server, [one.root],
                      {"FERRY_CRASH_AT": "before-manifest-put"}, [10])
    assert results[0].returncode == -9, results
    stored = keys_in(s3_server, bucket)
    assert [k for k in stored if k.startswith("_sig/staged/")]  # uploaded, not committed
    assert "_sig/m/000000000002.json" not in stored

    two = machine(tmp_path, "two", bucket, keys_from=one.root)
    assert two.dataset("shop.orders").version_numbers() == [1]
    assert ids(two) == [0, 1, 2]
    assert verified(two).ok, verified(two).problems
    one.publish("shop.orders", orders([20]), mode="append")  # the crashed machine goes on
    assert ids(two) == [0, 1, 2, 20]
    assert verified(two).ok, verified(two).problems


def test_the_cli_on_a_bucket_store(tmp_path: Path, bucket: str, s3_server: S3Server,
                                   ferry: Callable[..., Result]) -> None:
    one = machine(tmp_path, "one", bucket)
    model = str(one.root)
    csv = tmp_path / "orders.csv"
    csv.write_text("id,customer,amount,at\n1,a,1.50,2026-01-01T00:00:00Z\n"
                   "2,b,2.50,2026-01-01T00:00:00Z\n")
    assert ferry("publish", "shop.orders", csv, "--model", model).code == 0
    csv.write_text("id,customer,amount,at\n2,b,9.00,2026-01-02T00:00:00Z\n")
    merged = ferry("publish", "shop.orders", csv, "--mode", "merge", "--model", model)
    assert merged.code == 0, merged
    log = json.loads(ferry("log", "shop.orders", "--model", model, "--json").out)
    assert [v["version"] for v in log] == [2, 1]
    diff = ferry("diff", "shop.orders", "1", "2", "--model", model)
    assert "0 added, 0 removed, 1 changed" in diff.out, diff
    shown = ferry("show", "shop.orders@1", "--model", model)
    assert shown.code == 0 and "2.50" in shown.out
    assert ferry("verify", "--model", model).code == 0
    gc = ferry("gc", "--keep", "1", "--model", model)
    assert gc.code == 0 and "dropped versions 1..1" in gc.out, gc
    assert "_sig/m/000000000001.json" not in keys_in(s3_server, bucket)
    assert ferry("verify", "--model", model).code == 0
    listed = ferry("datasets", "--model", model, "--json")
    assert {d["ref"]: d["version"] for d in json.loads(listed.out)}["shop.orders"] == 2


def test_compact_in_a_bucket(tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(100)))
    one.publish("shop.orders", orders([5, 50], amount="9.00"), mode="merge")
    compacted = compact(one.dataset("shop.orders"), one.store.keys)
    assert compacted.version == 3 and compacted.reader_version == 1  # no vector left
    two = machine(tmp_path, "two", bucket)
    dataset = two.dataset("shop.orders")
    assert dataset.version(3).manifest.mode == "compact"
    assert ids(two) == list(range(100)) and ids(two, 1) == list(range(100))
    assert verified(two).ok, verified(two).problems
    from deltalake import DeltaTable

    table = DeltaTable(f"s3://{bucket}/lake/shop/orders", storage_options={
        "AWS_ALLOW_HTTP": "true", "AWS_ENDPOINT_URL": s3_server.endpoint})
    assert table.to_pyarrow_table().num_rows == 100  # a Delta reader, from the bucket


def test_a_version_of_new_inputs_and_the_same_rows_in_a_bucket(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    """What the chaos test found on a bucket: a transformer's version with new input
    versions and the same rows gets a Delta commit of its own there too, and another
    machine verifies it and publishes on top."""
    one = machine(tmp_path, "one", bucket)
    dataset = one.dataset("shop.orders")

    def computed(fixture: StoreFixture, ids: list[int], inputs: int) -> int:
        return int(publish_computed(fixture.dataset("shop.orders"), fixture.spec("shop.orders"),
                                    orders(ids), fixture.store.keys, inputs, by_key=True
                                    ).version)

    assert computed(one, [1, 2, 3], 1) == 1
    assert computed(one, [1, 2, 3], 2) == 2  # new inputs, the same rows
    assert dataset.version(2).manifest.delta_commit["version"] == 1
    assert "_delta_log/00000000000000000001.json" in keys_in(s3_server, bucket)
    two = machine(tmp_path, "two", bucket, keys_from=one.root)
    assert verified(two).ok, verified(two).problems
    assert computed(two, [1, 2, 4], 3) == 3
    assert ids(one) == [1, 2, 4] and ids(one, 2) == [1, 2, 3]
    assert verified(one).ok, verified(one).problems
