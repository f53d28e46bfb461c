"""A snapshot of a keyed table published as its keyed difference, against a plain replace.

For a generated table of ``--rows`` rows (default 2,000,000; the columns of
bench/store_publish.py), published once as version 1, each case publishes a new snapshot
of it two ways, on two copies of the same store, in this process:

  - replace: the whole table as new files (what a snapshot ingest did before);
  - difference: ``publish(by_key=True)``: compared by key with the head in DuckDB, only
    the new and changed rows written, deletion vectors for the rest (what it does now).

Cases: nothing changed, 3 rows changed (one update, one insert, one delete), 1% and 10%
of the rows updated, and every row updated (the worst case for the difference). Prints
each time, the ratio difference / replace, what each version says it added and removed,
and the peak RSS of each publish (run in a child process, VmHWM).

    python bench/snapshot_difference.py [--rows 2000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MODEL = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  files:
    kind: files
    path: source.parquet
    datasets:
      events:
        primary_key: [id]
        max_delete_ratio: 1
        columns:
          id: {type: int64, nullable: false}
          value: {type: float64}
          label: {type: string}
          count: {type: int32}
          at: {type: timestamp_tz}
"""

PUBLISH = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dataferry.model.graph import ModelIndex
    from dataferry.model.load import load_model
    from dataferry.store.files import read_input
    from dataferry.store.publish import publish
    from dataferry.store.store import Store

    root, source, by_key = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
    loaded = load_model(root)
    store = Store.for_model(root, loaded.ecosystem)
    spec = ModelIndex(loaded.ecosystem).datasets["bench.events"].spec
    started = time.perf_counter()
    data = read_input(source, "bench.events", spec.columns)
    result = publish(store.dataset("bench.events"), spec, data, keys=store.keys,
                     by_key=by_key)
    seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) / 1024
    print(seconds, peak, result.version, result.added_rows, result.removed_rows)
""")

ROWS_PER_BATCH = 1_000_000


def batch(start: int, rows: int, rng: np.random.Generator) -> pa.RecordBatch:
    return pa.record_batch({
        "id": pa.array(np.arange(start, start + rows, dtype=np.int64)),
        "value": pa.array(rng.standard_normal(rows)),
        "label": pc.cast(pa.array(rng.integers(0, 2**40, rows)), pa.string()),
        "count": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
        "at": pa.array(1_700_000_000_000_000 + rng.integers(0, 10**12, rows),
                       pa.timestamp("us", "UTC")),
    })


def generate(path: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    with pq.ParquetWriter(path, batch(0, 1, rng).schema, compression="zstd") as writer:
        for start in range(0, rows, ROWS_PER_BATCH):
            writer.write_batch(batch(start, min(ROWS_PER_BATCH, rows - start), rng))


def changed(source: Path, target: Path, rows: int, share: float, *, churn: bool) -> None:
    """``source`` with ``share`` of its rows updated (spread out), and with ``churn`` one
    row deleted and one inserted."""
    rng = np.random.default_rng(11)
    step = max(1, round(1 / share)) if share else 0
    file = pq.ParquetFile(source)
    with pq.ParquetWriter(target, file.schema_arrow, compression="zstd") as writer:
        for part in file.iter_batches(ROWS_PER_BATCH):
            if step:
                hit = pa.array(part["id"].to_numpy() % step == 0)
                part = part.set_column(2, "label", pc.if_else(
                    hit, pa.scalar("changed"), part["label"]))
            if churn:
                part = part.filter(pc.not_equal(part["id"], 5))
            writer.write_batch(part)
        if churn:
            extra = batch(rows + 10, 1, rng)
            writer.write_batch(extra.cast(file.schema_arrow))


def publish(root: Path, source: Path, by_key: bool) -> tuple[float, float, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-c", PUBLISH, str(root), str(source),
                           "1" if by_key else "0"], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr)
    seconds, peak, version, added, removed = done.stdout.split()
    outcome = (f"v{version} +{int(added):,} -{int(removed):,}" if version != "1"
               else "no new version")
    return float(seconds), float(peak), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        base = Path(tmp) / "base"
        (base / "teams" / "bench").mkdir(parents=True)
        (base / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (base / "teams" / "bench" / "bench.yaml").write_text(MODEL)
        first = Path(tmp) / "first.parquet"
        generate(first, args.rows)
        seconds, peak, _ = publish(base, first, False)
        print(f"{args.rows:,} rows; version 1 (replace): {seconds:.2f} s, peak {peak:.0f} MiB")
        cases = [("nothing changed", 0.0, False), ("3 rows (1 update, 1 insert, 1 delete)",
                  1 / args.rows, True), ("1% updated", 0.01, False),
                 ("10% updated", 0.1, False), ("every row updated", 1.0, False)]
        print(f"{'case':40} {'replace':>9} {'difference':>11} {'ratio':>6}  "
              f"{'peak MiB r/d':>13}  versions (replace | difference)")
        for name, share, churn in cases:
            snapshot = Path(tmp) / "snapshot.parquet"
            if share == 0.0:
                # The same rows, written again (a source read gives new bytes, not the
                # same file): the replace cannot tell that nothing changed.
                pq.write_table(pq.read_table(first), snapshot, compression="zstd",
                               row_group_size=500_000)
            else:
                changed(first, snapshot, args.rows, share, churn=churn)
            results = []
            for by_key in (False, True):
                root = Path(tmp) / ("difference" if by_key else "replace")
                shutil.rmtree(root, ignore_errors=True)
                shutil.copytree(base, root)
                results.append(publish(root, snapshot, by_key))
            (rs, rp, ro), (ds, dp, do) = results
            print(f"{name:40} {rs:8.2f}s {ds:10.2f}s {ds / rs:5.2f}x  {rp:6.0f}/{dp:<6.0f}"
                  f"  {ro} | {do}")


if __name__ == "__main__":
    main()
