"""PostgreSQL CDC under ``ferry up``: changes per second in, and the lag from a commit at
the source to the version that holds it being visible in the store.

Starts a PostgreSQL of its own with ``wal_level=logical``, a model with one ``capture:
cdc`` dataset (and a share consumer, so the scheduler runs its ingest), and
``ferry up --tick T`` in a child process. A writer commits ``--batch`` inserted rows
``--rate / --batch`` times a second for ``--seconds``; ids are sequential, so a version
holding N rows holds every batch up to id N. A poller reads the head's row count every
0.2 s and notes, for each batch, the seconds from its commit to the first version that
holds it. Prints the rate reached and the lag's p50, p95 and maximum.

    python bench/cdc_up.py [--rate 10000] [--batch 1000] [--seconds 60] [--tick 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cdc.logical_server import database, logical_server

from dataferry.model.load import load_model
from dataferry.store.store import Store

TEAM = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  pg:
    kind: postgres
    dsn: {dsn}
    datasets:
      events:
        table: events
        capture: cdc
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          payload: {{type: string}}
consumers:
  notebooks:
    sink: {{kind: share}}
    datasets: [{{ref: bench.events, freshness: 1h}}]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tick", type=float, default=1.0)
    args = parser.parse_args()
    with logical_server() as server, database(server) as dsn, \
            tempfile.TemporaryDirectory(prefix="ferry-bench-cdc-up-") as work:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("create table events (id bigint primary key, payload text)")
        root = Path(work) / "model"
        (root / "teams/bench").mkdir(parents=True)
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "teams/bench/bench.yaml").write_text(TEAM.format(dsn=dsn))
        up = subprocess.Popen(
            [sys.executable, "-m", "dataferry.cli", "up", "--model", str(root), "--tick",
             str(args.tick), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ})
        loaded = load_model(root)
        assert loaded.ecosystem is not None
        dataset = Store.for_model(root, loaded.ecosystem).dataset("bench.events")
        try:
            while not dataset.exists() or dataset.head() is None:  # the first snapshot
                time.sleep(0.2)
            committed: list[tuple[int, float]] = []  # (last id of a batch, commit time)
            done = threading.Event()

            def write() -> None:
                every = args.batch / args.rate
                with psycopg.connect(dsn, autocommit=True) as connection:
                    start = time.monotonic()
                    next_id = 1
                    while time.monotonic() - start < args.seconds:
                        connection.execute(
                            "insert into events select i, 'payload ' || i from "
                            "generate_series(%s::int8, %s::int8) i",
                            (next_id, next_id + args.batch - 1))
                        next_id += args.batch
                        committed.append((next_id - 1, time.monotonic()))
                        pause = start + len(committed) * every - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                done.set()

            writer = threading.Thread(target=write, daemon=True)
            started = time.monotonic()
            writer.start()
            lags: list[float] = []
            seen = 0
            while not (done.is_set() and seen == len(committed)):
                head = dataset.head()
                visible = head.manifest.rows if head is not None else 0
                now = time.monotonic()
                while seen < len(committed) and committed[seen][0] <= visible:
                    lags.append(now - committed[seen][1])
                    seen += 1
                if now - started > args.seconds + 300:
                    print("gave up waiting for the last batches")
                    break
                time.sleep(0.2)
            writer.join()
            rows = committed[-1][0] if committed else 0
            print(f"written: {rows:,} rows in {len(committed):,} transactions over "
                  f"{args.seconds:.0f} s: {rows / args.seconds:,.0f} changes/s "
                  f"(asked {args.rate:,})")
            if lags:
                ordered = sorted(lags)
                p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
                print(f"commit -> visible: p50 {statistics.median(lags):.2f} s, "
                      f"p95 {p95:.2f} s, max {ordered[-1]:.2f} s "
                      f"({len(lags):,} batches; {dataset.head_number()} versions)")
        finally:
            up.terminate()
            up.wait(timeout=60)


if __name__ == "__main__":
    main()
