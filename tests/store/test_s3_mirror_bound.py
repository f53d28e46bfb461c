"""A bucket store's mirror under a size bound smaller than one version (``mirror_size:``).

Every command still works: the data files it reads are fetched on demand (and checked
against their hashes), pinned while it runs, and evicted (least recently used first)
once it is done.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.engine.context import RunContext
from dataferry.errors import StoreError, UsageError
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.server.auth import Auth
from dataferry.store.diff import diff_versions
from dataferry.store.mirror_cache import DEFAULT_MIRROR_SIZE, parse_size, pinning
from dataferry.store.store import Store
from tests.conftest import write_files
from tests.replication.conftest import BI, OPS, SHOP, Ran, cli  # noqa: F401
from tests.server.conftest import FAST, PASSWORD
from tests.server.live import ferry_serve
from tests.store.conftest import TEAM, StoreFixture, orders
from tests.store.test_s3_serving import _publish
from tests.store.test_s3_store import S3Server, keys_in, verified
from tests.store.test_s3_store import bucket as bucket  # a fixture
from tests.store.test_s3_store import s3_server as s3_server  # a fixture

BOUND = 500
"""Bytes: less than any one data file of these tests."""


def bounded(tmp_path: Path, name: str, bucket: str, size: int | str = BOUND,
            keys_from: Path | None = None) -> StoreFixture:
    root = write_files(tmp_path / name, {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nstore: s3://{bucket}/lake\n"
                      f"mirror_size: {size}\n",
        "teams/shop/shop.yaml": TEAM,
    })
    if keys_from is not None:
        shutil.copytree(keys_from / ".ferry" / "keys", root / ".ferry" / "keys")
    loaded = load_model(root)
    assert loaded.ecosystem is not None and loaded.report.findings == []
    return StoreFixture(root, Store.for_model(root, loaded.ecosystem),
                        ModelIndex(loaded.ecosystem))


def held(fixture: StoreFixture) -> dict[str, int]:
    """The data files in the mirror: path relative to the dataset -> size."""
    cache = fixture.store.cache
    assert cache is not None
    base = fixture.store.root / "shop" / "orders"
    return {path.relative_to(base).as_posix(): stat.st_size
            for path, stat, _ in cache.data_files() if base in path.parents}


def rows(fixture: StoreFixture, version: int | None = None) -> list[tuple[int, str]]:
    """A command: the version's (id, amount) rows, its pins released after."""
    with pinning():
        dataset = fixture.dataset("shop.orders")
        table = dataset.reader(dataset.resolve(version)).read_all()
    return sorted(zip(table.column("id").to_pylist(),
                      [str(a) for a in table.column("amount").to_pylist()], strict=True))


def publish(fixture: StoreFixture, data: object, mode: str = "replace") -> int:
    with pinning():
        return int(fixture.publish("shop.orders", data, mode=mode).version)  # type: ignore[arg-type]


def test_every_command_works_with_a_mirror_smaller_than_one_version(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = bounded(tmp_path, "one", bucket)
    assert one.store.mirror_size == BOUND
    assert publish(one, orders(range(1, 200))) == 1
    assert publish(one, orders(range(200, 300)), "append") == 2
    assert publish(one, orders([5, 250, 900], amount="7.00"), "merge") == 3  # vectors
    in_bucket = [k for k in keys_in(s3_server, bucket) if not k.startswith(("_sig", "_delta"))]
    assert min(s3_server.client().head_object(
        Bucket=bucket, Key=f"lake/shop/orders/{k}")["ContentLength"]
        for k in in_bucket if k.endswith(".parquet")) > BOUND
    one.store.cache.trim()  # type: ignore[union-attr]  # the last command's files go too
    assert held(one) == {}

    # Time travel, on demand: each version's rows, then nothing held again.
    expected_1 = [(i, "1.50") for i in range(1, 200)]
    assert rows(one, 1) == expected_1
    assert rows(one, 2) == [(i, "1.50") for i in range(1, 300)]
    head = rows(one)
    assert len(head) == 300 and (5, "7.00") in head and (900, "7.00") in head
    with pinning():
        changes = diff_versions(one.dataset("shop.orders"), 2, 3)
    assert (changes.added, changes.removed, changes.changed) == (1, 0, 2)
    with pinning():
        assert verified(one).ok
    one.store.cache.trim()  # type: ignore[union-attr]
    assert sum(held(one).values()) <= BOUND

    # A merge on top of an empty mirror reads what it needs and publishes.
    assert publish(one, orders([1, 2], amount="3.00"), "merge") == 4
    assert rows(one)[:2] == [(1, "3.00"), (2, "3.00")]
    assert rows(one, 1) == expected_1  # the old version, fetched again

    # Another machine with its own tiny mirror sees the same, and verifies everything.
    two = bounded(tmp_path, "two", bucket, keys_from=one.root)
    assert rows(two) == rows(one)
    with pinning():
        report = verified(two)
    assert report.ok, report.problems
    assert report.checked_files == 4  # one a version (merges add one each)


def test_a_file_in_use_is_never_evicted(tmp_path: Path, bucket: str) -> None:
    one = bounded(tmp_path, "one", bucket)
    publish(one, orders(range(1, 200)))
    publish(one, orders(range(200, 400)))  # a replace: other files
    publish(one, orders(range(400, 600)))
    cache = one.store.cache
    assert cache is not None
    cache.trim()
    with pinning():  # a command reading version 1 (lazily, as Spark or a stream does)
        dataset = one.dataset("shop.orders")
        first = dataset.reader(dataset.resolve(1))
        pinned = set(held(one))
        assert pinned
        assert rows(one, 2) and rows(one, 3)  # other commands meanwhile, and eviction
        assert pinned <= set(held(one))  # still there
        assert sorted(first.read_all().column("id").to_pylist()) == list(range(1, 200))
    cache.trim()
    assert held(one) == {}


PINNER = """
import sys
from pathlib import Path
from dataferry.model.load import load_model
from dataferry.store.store import Store

root = Path(sys.argv[1])
store = Store.for_model(root, load_model(root).ecosystem)
dataset = store.dataset("shop.orders")
reader = dataset.reader(dataset.resolve(1))   # pinned for this process
print("pinned", flush=True)
sys.stdin.readline()
print(sorted(reader.read_all().column("id").to_pylist()) == list(range(1, 200)), flush=True)
"""


def test_another_process_pins_protect_its_files(tmp_path: Path, bucket: str,
                                                s3_server: S3Server) -> None:
    one = bounded(tmp_path, "one", bucket)
    publish(one, orders(range(1, 200)))
    publish(one, orders(range(200, 400)))
    one.store.cache.trim()  # type: ignore[union-attr]
    script = tmp_path / "pinner.py"
    script.write_text(textwrap.dedent(PINNER))
    child = subprocess.Popen([sys.executable, str(script), str(one.root)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**__import__("os").environ, **s3_server.env})
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "pinned"
        theirs = set(held(one))
        assert theirs
        assert rows(one, 2)  # this process evicts what it may
        assert theirs <= set(held(one))  # not what the other process reads
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "True"
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    one.store.cache.trim()  # type: ignore[union-attr]  # its pins left with it
    assert held(one) == {}


def test_a_file_changed_in_the_bucket_is_refused_when_fetched(
        tmp_path: Path, bucket: str, s3_server: S3Server) -> None:
    one = bounded(tmp_path, "one", bucket)
    publish(one, orders(range(1, 200)))
    one.store.cache.trim()  # type: ignore[union-attr]
    data = next(k for k in keys_in(s3_server, bucket) if k.endswith(".parquet"))
    key = f"lake/shop/orders/{data}"
    client = s3_server.client()
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    with pytest.raises(StoreError) as refused:
        rows(one)
    assert f"s3://{bucket}/{key}: content does not match its hash" in str(refused.value)
    assert held(one) == {}  # not kept
    with pinning():
        problems = verified(one).problems
    assert [(p.version, p.file) for p in problems] == [(1, f"s3://{bucket}/{key}")]


def test_the_default_bound_and_bad_settings(tmp_path: Path, bucket: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plain = write_files(tmp_path / "plain", {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nstore: s3://{bucket}/lake\n"})
    loaded = load_model(plain)
    assert loaded.ecosystem is not None
    assert Store.for_model(plain, loaded.ecosystem).mirror_size == DEFAULT_MIRROR_SIZE
    monkeypatch.setenv("FERRY_MIRROR_SIZE", "512MiB")  # this machine's disk
    loaded = load_model(plain)
    assert loaded.ecosystem is not None
    assert Store.for_model(plain, loaded.ecosystem).mirror_size == 512 * 1024**2
    monkeypatch.setenv("FERRY_MIRROR_SIZE", "lots")
    with pytest.raises(UsageError, match=r"mirror_size: 'lots' is not a size.*FERRY_MIRROR"):
        load_model(plain)
    monkeypatch.delenv("FERRY_MIRROR_SIZE")

    bad = write_files(tmp_path / "bad", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\nmirror_size: 12 parsecs\n"})
    findings = load_model(bad).report.findings
    assert [(f.file, f.line) for f in findings if "'12 parsecs' is not a size" in f.message
            ] == [("ferry.yaml", 3)], findings


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("2000", 2000), ("20GB", 20 * 1000**3), ("512MiB", 512 * 1024**2),
    ("1.5G", 1_500_000_000), ("10 kb", 10_000), ("3TiB", 3 * 1024**4)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_hub_with_a_tiny_mirror_serves_clones(
        tmp_path: Path, bucket: str, cli: Callable[..., Ran]) -> None:  # noqa: F811
    teams = {"teams/shop/shop.yaml": SHOP, "teams/ops/ops.yaml": OPS, "teams/bi/bi.yaml": BI}
    hub = write_files(tmp_path / "hub", {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nstore: s3://{bucket}/lake\n"
                      f"mirror_size: {BOUND}\n", **teams})
    context = RunContext.from_loaded(load_model(hub))
    auth = Auth.for_context(context, FAST)
    auth.accounts.add("olga", "member", PASSWORD, actor="test", teams=["ops"])
    token = auth.tokens.create_api(auth.accounts.get("olga"), "clone", actor="test",
                                   expires_in=timedelta(days=1)).secret
    context.close()
    with pinning():  # a command of this process
        assert _publish(hub, 1, 300, "replace") == 1
    with pinning():  # a command of this process
        assert _publish(hub, 301, 100) == 2
    clone = tmp_path / "clone"
    with ferry_serve(hub) as served:
        cloned = cli("clone", f"{served.url}/shop.orders", clone, "--token", token)
        assert cloned.code == 0, cloned
        with pinning():  # a command of this process
            assert _publish(hub, 401, 50) == 3
        pulled = cli("pull", clone, "--json", env={"FERRY_TOKEN": token})
        assert pulled.code == 0, pulled
        assert json.loads(pulled.out)[0]["versions"] == [3]
    verified_clone = cli("verify", "--store", clone)
    assert verified_clone.code == 0, verified_clone
    copy = Store(clone.resolve(), tmp_path / "home").dataset("shop.orders")
    assert copy.reader(copy.resolve(3)).read_all().num_rows == 450
    loaded = load_model(hub)
    assert loaded.ecosystem is not None
    store = Store.for_model(hub, loaded.ecosystem)
    assert store.cache is not None
    store.cache.trim()
    assert sum(stat.st_size for _, stat, _ in store.cache.data_files()) <= BOUND




@given(st.integers(0, 10**6), st.sampled_from(["", "b", "KB", "kib", "M", "MiB", "gb", "GiB",
                                               "t", "TiB"]), st.sampled_from(["", " "]))
def test_a_size_is_its_number_times_its_unit(number: int, unit: str, space: str) -> None:
    factor = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "m": 1000**2, "mib": 1024**2,
              "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tib": 1024**4}[unit.lower()]
    assert parse_size(f"{number}{space}{unit}") == number * factor


@given(st.text(max_size=20))
def test_any_text_is_a_size_or_a_clear_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError as exc:
        assert "is not a size" in str(exc)
    else:
        assert size >= 0 and any(c.isdigit() for c in text)
