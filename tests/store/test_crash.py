"""A publish killed with SIGKILL at any point leaves the previous version intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from dataferry.store.gc import collect
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders

WRITER = textwrap.dedent("""
    import sys
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

    def batches():
        for start in range(1000, 21000, 1000):
            ids = list(range(start, start + 1000))
            yield pa.record_batch({"id": pa.array(ids, pa.int64()), "customer": [str(i) for i in ids],
                                   "amount": pa.array([None] * len(ids), pa.decimal128(12, 2)),
                                   "at": pa.array([None] * len(ids), pa.timestamp("us", "UTC"))})

    schema = next(batches()).schema
    publish(store.dataset("shop.orders"), spec, pa.RecordBatchReader.from_batches(schema, batches()),
            keys=store.keys, mode=sys.argv[2])
""")

POINTS = ["write-file", "after-files", "after-commit", "before-manifest", "before-signature"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_killed_publish_leaves_the_previous_version(shop: StoreFixture, point: str, mode: str) -> None:
    shop.publish("shop.orders", orders(range(1, 11)))
    dataset = shop.dataset("shop.orders")
    env = {**os.environ, "FERRY_CRASH_AT": point}
    done = subprocess.run([sys.executable, "-c", WRITER, str(shop.root), mode], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert dataset.version_numbers() == [1]
    table = dataset.reader(dataset.resolve(None)).read_all()
    assert sorted(table["id"].to_pylist()) == list(range(1, 11))
    report = VerifyReport()
    verify_dataset(dataset, report)
    assert report.ok, report.problems
    # The next write succeeds and does not carry anything of the killed attempt.
    again = shop.publish("shop.orders", orders([500]), mode="append")
    assert again.version == 2 and again.rows == 11
    table = dataset.reader(dataset.resolve(None)).read_all()
    assert sorted(table["id"].to_pylist()) == [*range(1, 11), 500]
    # gc removes what the killed attempt left behind, and the store still verifies.
    before = {p.name for p in dataset.path.glob("*.parquet")}
    result = collect(dataset, shop.store.keys, None)
    after = {p.name for p in dataset.path.glob("*.parquet")}
    assert before - after == set(result.deleted_files)
    if point in ("after-files", "after-commit", "before-manifest", "before-signature"):
        assert result.deleted_files, "the killed attempt's files are orphans"
    assert not list(dataset.path.rglob("*.tmp"))
    report = VerifyReport()
    verify_dataset(dataset, report)
    assert report.ok, report.problems
