"""A full disk under the store: one line, nothing published, nothing left behind.

The store lives on a small tmpfs of its own (mounting one needs root, as CI and this
project's machines have; elsewhere the test skips and says why). A filler file leaves
the publish less room than it needs at each step in turn: the Parquet files, the Delta
commit, the manifest and signature.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import write_files
from tests.store.conftest import TEAM

ROWS = 150_000


def orders(seed: int) -> pa.Table:
    ids = pa.array(range(ROWS), pa.int64())
    names = [f"{seed:02d}{os.urandom(7).hex()}" for _ in range(ROWS)]
    return pa.table({"id": ids, "customer": names,
                     "amount": pa.array(["1.00"] * ROWS).cast(pa.decimal128(12, 2)),
                     "at": pa.array([0] * ROWS, pa.timestamp("us", tz="UTC"))})


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(
        small_disk: Path, tmp_path: Path, ferry: Callable[..., Any]) -> None:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nhome: {small_disk}/home\n",
        "teams/shop/shop.yaml": TEAM})
    m = ["--model", str(root)]
    pq.write_table(orders(1), tmp_path / "v1.parquet")
    assert ferry("publish", "shop.orders", tmp_path / "v1.parquet", *m).code == 0
    store = small_disk / "home" / "store" / "shop" / "orders"
    [first] = list(store.glob("part-*.parquet"))
    pq.write_table(orders(2), tmp_path / "v2.parquet")
    filler = small_disk / "filler"
    failures = 0
    for spare in (-200_000, 2_000, 4_000, 6_000, 8_000, 12_000):
        filler.unlink(missing_ok=True)
        room = free_bytes(small_disk) - first.stat().st_size - spare
        filler.write_bytes(b"\0" * max(room, 0))
        result = ferry("publish", "shop.orders", tmp_path / "v2.parquet", *m)
        if result.code == 0:
            break  # enough room at last: it published
        failures += 1
        assert result.code == 1
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and "no space left" in lines[0], result.err
        assert "nothing was published" in lines[0] and "Traceback" not in result.err
        assert list(store.glob("part-*.parquet")) == [first]  # no orphan keeps it full
        assert ferry("verify", *m).code == 0
    assert failures >= 3  # it failed at several steps before it had room
    filler.unlink(missing_ok=True)
    shown = ferry("log", "shop.orders", "--json", *m)
    assert shown.code == 0


def test_a_full_metadata_disk_is_one_line(small_disk: Path, tmp_path: Path,
                                          ferry: Callable[..., Any]) -> None:
    """The run history's database on a full disk: one line, no SQLAlchemy traceback."""
    from tests.broker.small_model import make_shop

    root = make_shop(tmp_path / "model")
    ferry_yaml = root / "ferry.yaml"
    ferry_yaml.write_text(ferry_yaml.read_text().rstrip("\n")
                          + f"\nmetadata: sqlite:///{small_disk}/ferry.db\n")
    assert ferry("run", "--model", str(root)).code == 0  # the history exists
    for spare in (4096, 65536):  # the disk fills before the run opens it, or during it
        filler = small_disk / "filler"
        filler.unlink(missing_ok=True)
        filler.write_bytes(b"\0" * (free_bytes(small_disk) - spare))
        result = ferry("run", "--full", "--model", str(root))
        assert result.code == 1
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.err, result.err
        assert "metadata database" in lines[0] or "no space left" in lines[0], result.err
