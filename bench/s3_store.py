"""The store in a bucket against the same store on local disk.

Publishes ``--rows`` generated rows (replace, then a 1% merge) to a local store and to
``s3://<bucket>/bench``, then opens the bucket's dataset from a fresh mirror (a second
machine: the history only), reads it (fetching its files), reads it again (from the
mirror) and verifies it; then reads it on a third machine whose mirror is bounded to
1 MB (``mirror_size``), so every read downloads the files again (once another
command has evicted them): the ratio of those
reads to the second machine's second read is the cost of a mirror too small. Against moto's server by default (started on a free
port: in-process Python, so its numbers are a floor for the protocol's overhead, not a
measure of S3); set AWS_ENDPOINT_URL and the AWS credentials to measure a real store.

    python bench/s3_store.py [--rows 2000000] [--bucket NAME]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.store.mirror_cache import pinning
from dataferry.store.publish import publish
from dataferry.store.store import Store
from dataferry.store.verify import VerifyReport, verify_dataset

TEAM = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  db:
    kind: sqlite
    path: x.db
    datasets:
      events:
        table: events
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          value: {type: float64}
          name: {type: string}
"""


@contextmanager
def s3_endpoint() -> Iterator[None]:
    if os.environ.get("AWS_ENDPOINT_URL"):
        yield
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        server.terminate()
        server.wait()


def batches(rows: int, start: int = 0) -> Iterator[pa.RecordBatch]:
    for first in range(start, start + rows, 500_000):
        ids = pa.array(range(first, min(first + 500_000, start + rows)), pa.int64())
        yield pa.RecordBatch.from_arrays(
            [ids, ids.cast(pa.float64()), ids.cast(pa.string())], names=["id", "value", "name"])


def model(root: Path, store: str | None, extra: str = "") -> tuple[Store, ModelIndex]:
    (root / "teams" / "bench").mkdir(parents=True)
    (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n"
                                     + (f"store: {store}\n" if store else "") + extra)
    (root / "teams" / "bench" / "bench.yaml").write_text(TEAM)
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return Store.for_model(root, loaded.ecosystem), ModelIndex(loaded.ecosystem)


def timed(label: str, action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    took = time.perf_counter() - started
    print(f"  {label:<34} {took:7.2f} s")
    return took


def run(store: Store, index: ModelIndex, rows: int) -> None:
    spec = index.datasets["bench.events"].spec
    schema = pa.schema([("id", pa.int64()), ("value", pa.float64()), ("name", pa.string())])

    def replace() -> None:
        publish(store.dataset("bench.events"), spec,
                pa.RecordBatchReader.from_batches(schema, batches(rows)), keys=store.keys)

    def merge() -> None:
        publish(store.dataset("bench.events"), spec,
                pa.RecordBatchReader.from_batches(schema, batches(rows // 100, rows // 2)),
                keys=store.keys, mode="merge")

    timed("publish (replace)", replace)
    timed("publish (1% merge)", merge)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--bucket", default=f"ferry-bench-{uuid.uuid4().hex[:8]}")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp, s3_endpoint():
        import boto3

        client = boto3.client("s3")
        if options.bucket.startswith("ferry-bench-"):
            client.create_bucket(Bucket=options.bucket)
        print(f"local store, {options.rows:,} rows")
        run(*model(Path(temp) / "local", None), options.rows)
        print(f"s3://{options.bucket}/bench ({os.environ['AWS_ENDPOINT_URL']})")
        store, index = model(Path(temp) / "one", f"s3://{options.bucket}/bench")
        run(store, index, options.rows)
        other, _ = model(Path(temp) / "two", f"s3://{options.bucket}/bench")
        opened: list[object] = []
        timed("open on a fresh mirror (history)", lambda: opened.append(
            other.dataset("bench.events")))
        timed("open again (nothing changed)", lambda: other.dataset("bench.events"))

        def read(store: Store) -> None:
            with pinning():  # one command
                dataset = store.dataset("bench.events")
                sum(b.num_rows for b in dataset.reader(dataset.resolve(None)))

        timed("read every row (fetching files)", lambda: read(other))
        warm = timed("read every row again (mirror)", lambda: read(other))
        dataset = other.dataset("bench.events")
        report = VerifyReport()
        timed("verify", lambda: verify_dataset(dataset, report))
        assert report.ok, report.problems
        small, _ = model(Path(temp) / "three", f"s3://{options.bucket}/bench",
                         "mirror_size: 1MB\n")
        assert small.cache is not None

        def evicted_then_read() -> None:
            assert small.cache is not None
            small.cache.trim()  # as the next command's first download does
            read(small)

        cold = min(timed("read, 1 MB mirror (fetching)", evicted_then_read)
                   for _ in range(2))
        print(f"  a 1 MB mirror reads {cold / warm:.1f}x slower than a mirror that holds "
              "the version (same process)")


if __name__ == "__main__":
    main()
