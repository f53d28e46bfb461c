"""``--store s3://bucket/prefix``: the commands that read a store without a model, and
``ferry serve --store s3://... --anonymous``, on a bucket store (moto's S3 server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dataferry.store.store import Store
from tests.replication.conftest import Ran, cli  # noqa: F401
from tests.server.live import Served, _wait_until_up
from tests.store.conftest import orders
from tests.store.test_s3_store import S3Server, keys_in, machine
from tests.store.test_s3_store import bucket as bucket  # a fixture
from tests.store.test_s3_store import s3_server as s3_server  # a fixture


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME of the commands: ``--store`` keeps the bucket's mirror under ~/.ferry."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path / "user"


@contextmanager
def serve_bucket(url: str, log: Path) -> Iterator[Served]:
    """``ferry serve --store URL --anonymous`` on a free port until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    ferry = Path(sys.executable).parent / "ferry"
    with log.open("wb") as output:
        process = subprocess.Popen([str(ferry), "serve", "--port", str(port), "--store", url,
                                    "--anonymous"], env=dict(os.environ),
                                   stdout=output, stderr=subprocess.STDOUT)
    served = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(served, process, log)
        yield Served(served, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_reading_commands_take_a_bucket_store(
        tmp_path: Path, bucket: str, s3_server: S3Server, home: Path,
        cli: Callable[..., Ran]) -> None:  # noqa: F811
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(1, 4)))
    one.publish("shop.orders", orders([2, 9], amount="7.00"), mode="merge")
    store = f"s3://{bucket}/lake"

    listed = cli("datasets", "--store", store, "--json")
    assert listed.code == 0, listed
    assert {d["ref"]: d["version"] for d in json.loads(listed.out)} == {"shop.orders": 2}
    log = cli("log", "shop.orders", "--store", store, "--json")
    assert [v["version"] for v in json.loads(log.out)] == [2, 1]
    shown = cli("show", "shop.orders@1", "--store", store, "--json")
    assert shown.code == 0 and json.loads(shown.out)["rows_total"] == 3, shown
    diff = cli("diff", "shop.orders", "1", "2", "--store", store)
    assert "1 added, 0 removed, 1 changed" in diff.out, diff
    verified = cli("verify", "--store", store)
    assert verified.code == 0, verified
    assert (home / ".ferry" / "s3" / bucket / "store" / "lake" / "shop" / "orders").is_dir()

    # An object changed in the bucket: verify names it, exit 1.
    data = next(k for k in keys_in(s3_server, bucket) if k.endswith(".parquet"))
    key = f"lake/shop/orders/{data}"
    client = s3_server.client()
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    altered = cli("verify", "--store", store)
    assert altered.code != 0
    assert f"s3://{bucket}/{key}: content does not match its hash" in altered.out + altered.err

    missing = cli("verify", "--store", f"s3://no-such-{bucket}/lake")
    assert missing.code != 0
    assert "NoSuchBucket; create the bucket" in missing.err, missing
    assert "Traceback" not in missing.err
    assert "ferry-secret" not in missing.out + missing.err
    folder = cli("verify", "--store", tmp_path / "nowhere")
    assert folder.code != 0 and "does not exist (a folder, or s3://bucket/prefix)" in folder.err


def test_serve_anonymous_from_a_bucket_store(
        tmp_path: Path, bucket: str, home: Path, cli: Callable[..., Ran]) -> None:  # noqa: F811
    one = machine(tmp_path, "one", bucket)
    one.publish("shop.orders", orders(range(1, 300)))
    clone = tmp_path / "clone"
    with serve_bucket(f"s3://{bucket}/lake", tmp_path / "serve.log") as served:
        cloned = cli("clone", f"{served.url}/shop.orders", clone)
        assert cloned.code == 0, cloned
        one.publish("shop.orders", orders(range(300, 350)), mode="append")  # elsewhere
        pulled = cli("pull", clone, "--json")
        assert pulled.code == 0, pulled
        assert json.loads(pulled.out)[0]["versions"] == [2]
        unknown = cli("clone", f"{served.url}/shop.nothing", tmp_path / "other")
        assert unknown.code != 0 and "holds no dataset" in unknown.err, unknown
    assert "serving 1 datasets of s3://" in (tmp_path / "serve.log").read_text()
    assert cli("verify", "--store", clone).code == 0
    copy = Store(clone.resolve(), tmp_path / "h").dataset("shop.orders")
    assert copy.reader(copy.resolve(2)).read_all().num_rows == 349
