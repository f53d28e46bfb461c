"""Publishing and verifying a large dataset, against the physical baselines.

Prints, for a generated Parquet file of about ``--size-mib`` MiB (default 1024):
  - publish time / (pyarrow.parquet.write_table of the same data + one BLAKE3 pass over
    the written file)                                       target <= 1.5x
  - peak RSS of the publishing process (streams record batches)  target < 512 MiB
  - ferry verify speed / BLAKE3 speed over the same bytes (b3sum when installed, else
    the blake3 module with all threads; plus hashlib.sha256 for reference)  target >= 70%

    python bench/store_publish.py [--size-mib 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROWS_PER_BATCH = 1_000_000
BYTES_PER_ROW = 27  # measured: what one generated row costs in zstd Parquet

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

    root = Path(sys.argv[1])
    loaded = load_model(root)
    store = Store.for_model(root, loaded.ecosystem)
    spec = ModelIndex(loaded.ecosystem).datasets["bench.events"].spec
    started = time.perf_counter()
    data = read_input(root / "source.parquet", "bench.events", spec.columns)
    result = publish(store.dataset("bench.events"), spec, data, keys=store.keys)
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss over fork and exec.
    status = Path("/proc/self/status").read_text()
    peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) / 1024
    print(f"{seconds} {peak} {result.rows} {result.bytes}")
""")


def batch(start: int, rows: int, rng: np.random.Generator) -> pa.RecordBatch:
    ids = pa.array(np.arange(start, start + rows, dtype=np.int64))
    return pa.record_batch({
        "id": ids,
        "value": pa.array(rng.standard_normal(rows)),
        "label": pc.cast(pa.array(rng.integers(0, 2**40, rows)), pa.string()),
        "count": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
        "at": pa.array(1_700_000_000_000_000 + rng.integers(0, 10**12, rows),
                       pa.timestamp("us", "UTC")),
    })


def generate(path: Path, size_mib: int) -> int:
    rows = size_mib * 2**20 // BYTES_PER_ROW
    rng = np.random.default_rng(7)
    first = batch(0, 1, rng)
    with pq.ParquetWriter(path, first.schema, compression="zstd") as writer:
        for start in range(0, rows, ROWS_PER_BATCH):
            writer.write_batch(batch(start, min(ROWS_PER_BATCH, rows - start), rng))
    return rows


def blake3_file(path: Path) -> float:
    started = time.perf_counter()
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(path))
    hasher.hexdigest()
    return time.perf_counter() - started


def b3sum(paths: list[Path]) -> float | None:
    if shutil.which("b3sum") is None:
        return None
    started = time.perf_counter()
    subprocess.run(["b3sum", *map(str, paths)], check=True, capture_output=True)
    return time.perf_counter() - started


def sha256_file(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return time.perf_counter() - started


def line(label: str, value: str) -> None:
    print(f"{label:<58} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        root = args.keep or Path(tmp)
        (root / "teams" / "bench").mkdir(parents=True, exist_ok=True)
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "teams" / "bench" / "bench.yaml").write_text(MODEL)
        source = root / "source.parquet"
        rows = generate(source, args.size_mib)
        size = source.stat().st_size
        line("data", f"{rows:,} rows, {size / 2**20:,.0f} MiB of zstd Parquet")

        table = pq.read_table(source)
        baseline_file = root / "baseline.parquet"
        started = time.perf_counter()
        pq.write_table(table, baseline_file, compression="zstd")
        write_seconds = time.perf_counter() - started
        del table
        hash_seconds = blake3_file(baseline_file)
        baseline = write_seconds + hash_seconds
        line("baseline: write_table", f"{write_seconds:6.2f} s")
        line("baseline: + one BLAKE3 pass over the file", f"{hash_seconds:6.2f} s")
        baseline_file.unlink()

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run([sys.executable, "-c", PUBLISH, str(root)], capture_output=True,
                              text=True, check=True, env=env)
        seconds, peak, published_rows, published_bytes = done.stdout.split()
        publish_seconds = float(seconds)
        line("ferry publish (stream from the file, check, hash, sign)",
             f"{publish_seconds:6.2f} s  = {publish_seconds / baseline:.2f}x baseline "
             f"(target <= 1.5x)")
        line("peak RSS while publishing", f"{float(peak):6.0f} MiB (target < 512 MiB)")
        assert int(published_rows) == rows

        store_files = sorted((root / ".ferry" / "store" / "bench" / "events").glob("*.parquet"))
        from dataferry.store.dataset import DatasetStore
        from dataferry.store.verify import VerifyReport, verify_dataset

        started = time.perf_counter()
        report = VerifyReport()
        verify_dataset(DatasetStore(root / ".ferry" / "store", "bench.events"), report)
        in_process = time.perf_counter() - started
        assert report.ok, report.problems
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dataferry.cli", "verify", "--model",
                               str(root)], capture_output=True, text=True, env=env)
        verify_seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stdout + done.stderr
        b3 = b3sum(store_files)
        module = sum(blake3_file(f) for f in store_files)
        sha = sum(sha256_file(f) for f in store_files)
        reference = b3 if b3 is not None else module
        name = "b3sum" if b3 is not None else "blake3 module, all threads"
        line(f"hashing the same bytes: {name}", f"{reference:6.2f} s")
        line("hashing the same bytes: hashlib.sha256", f"{sha:6.2f} s")
        line("verify (every check of the list, in process)",
             f"{in_process:6.2f} s  = {reference / in_process:.0%} of {name} speed "
             "(target >= 70%)")
        line("ferry verify (the whole command, process start included)",
             f"{verify_seconds:6.2f} s")
        self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        line("(this script's own peak RSS, holding the baseline table)", f"{self_peak:6.0f} MiB")
        del published_bytes


if __name__ == "__main__":
    main()
