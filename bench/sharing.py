"""Delta Sharing throughput: ``load_as_pandas`` through ``ferry serve`` against reading the
same Parquet files from disk with pyarrow (``to_pandas``), both in the official client's
own venv (same pyarrow and pandas), best of ``--repeat``.

A files source of ``--rows`` rows (id, value, label, at) is ingested and shared whole to a
consumer (the stored files are served as they are), and to a second consumer with a
``where`` and a ``mask`` (a file derived once, then cached; its first query is timed too).

Then 1% of the rows change and a second version is published with deletion vectors: the
whole consumer reads it with ``use_delta_format=True`` (stored files and vectors passed
through, nothing derived) and in the parquet format (a file without the deleted rows,
derived on the first query).

    python bench/sharing.py [--rows 5000000] [--repeat 3]           target <= 1.5x
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.outside_tools import tool_venv  # noqa: E402
from tests.server.live import ferry_serve  # noqa: E402

from dataferry.model.load import load_model  # noqa: E402
from dataferry.store.store import Store  # noqa: E402

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
          at: {type: timestamp_tz}
consumers:
  whole:
    sink: {kind: parquet, path: out/whole}
    datasets: [bench.events]
  masked:
    sink: {kind: parquet, path: out/masked}
    datasets:
      - {ref: bench.events, where: "id % 2 = 0", mask: [label]}
"""

READ = """\
import json, sys, time
import delta_sharing, pyarrow.parquet as pq
profile, table, files, repeat = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
url = f"{profile}#{table}"
first = time.perf_counter(); rows = len(delta_sharing.load_as_pandas(url))
first = time.perf_counter() - first
shared = []
for _ in range(repeat):
    started = time.perf_counter(); delta_sharing.load_as_pandas(url)
    shared.append(time.perf_counter() - started)
disk = []
for _ in range(repeat):
    started = time.perf_counter()
    for path in files:
        pq.read_table(path).to_pandas()
    disk.append(time.perf_counter() - started)
print(json.dumps({"rows": rows, "first": first, "shared": min(shared), "disk": min(disk)}))
"""

VECTORS = """\
import json, sys, time
import delta_sharing
profile, table, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = f"{profile}#{table}"
out = {}
for name, delta in (("delta", True), ("parquet", False)):
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        rows = len(delta_sharing.load_as_pandas(url, use_delta_format=delta))
        times.append(time.perf_counter() - started)
    out[name] = {"rows": rows, "first": times[0], "best": min(times[1:])}
print(json.dumps(out))
"""


def line(label: str, value: str) -> None:
    print(f"{label:<60} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = tool_venv("delta-sharing", ["delta-sharing"]) / "python"
    ferry = Path(sys.executable).parent / "ferry"
    with tempfile.TemporaryDirectory(prefix="ferry-bench-sharing-") as tmp:
        root = Path(tmp) / "model"
        (root / "teams" / "bench").mkdir(parents=True)
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "teams" / "bench" / "bench.yaml").write_text(MODEL)
        ids = np.arange(args.rows, dtype=np.int64)
        pq.write_table(pa.table({
            "id": ids, "value": ids * 0.5,
            "label": pa.array(np.char.add("label-", (ids % 1000).astype(str))),
            "at": pa.array(ids * 1_000_000, pa.timestamp("us", tz="UTC")),
        }), root / "source.parquet")
        started = time.perf_counter()
        subprocess.run([str(ferry), "run", "--model", str(root)], check=True,
                       capture_output=True)
        line("ferry run (ingest + two parquet deliveries)",
             f"{time.perf_counter() - started:.1f} s")
        loaded = load_model(root)
        assert loaded.ecosystem is not None, "the bench model has a ferry.yaml"
        dataset = Store.for_model(root, loaded.ecosystem).dataset("bench.events")
        stored = dataset.file_paths(dataset.resolve(None))
        with ferry_serve(root) as served:
            for consumer in ("whole", "masked"):
                profile = Path(tmp) / f"{consumer}.share"
                subprocess.run([str(ferry), "share", "create", f"bench.{consumer}",
                                "--endpoint", served.url, "--out", str(profile), "--model",
                                str(root)], check=True, capture_output=True)
                done = subprocess.run(
                    [str(python), "-c", READ, str(profile), f"bench__{consumer}.bench.events",
                     json.dumps(stored), str(args.repeat)],
                    check=True, capture_output=True, text=True)
                got = json.loads(done.stdout)
                line(f"{consumer}: rows through the share", f"{got['rows']:,}")
                line(f"{consumer}: first load_as_pandas (derives when needed)",
                     f"{got['first']:.2f} s")
                line(f"{consumer}: load_as_pandas (best of {args.repeat})",
                     f"{got['shared']:.2f} s")
                line(f"{consumer}: pyarrow read + to_pandas of the stored files",
                     f"{got['disk']:.2f} s")
                line(f"{consumer}: ratio share / disk (target <= 1.5x for whole)",
                     f"{got['shared'] / got['disk']:.2f}x")
            changed = ids[ids % 100 == 7]  # 1% of the rows, spread over every file
            source = pq.read_table(root / "source.parquet")
            value = pc.if_else(pc.equal(pc.remainder(source["id"], 100), 7),
                               pc.multiply(source["value"], -1.0), source["value"])
            pq.write_table(source.set_column(1, "value", value), root / "source.parquet")
            started = time.perf_counter()
            subprocess.run([str(ferry), "run", "--model", str(root)], check=True,
                           capture_output=True)
            line(f"ferry run: {len(changed):,} rows changed (version 2, deletion vectors)",
                 f"{time.perf_counter() - started:.1f} s")
            done = subprocess.run(
                [str(python), "-c", VECTORS, str(Path(tmp) / "whole.share"),
                 "bench__whole.bench.events", str(args.repeat)],
                check=True, capture_output=True, text=True)
            got = json.loads(done.stdout)
            for name, label in (("delta", "vectors passed through (responseformat=delta)"),
                                ("parquet", "deleted rows rewritten out (parquet)")):
                line(f"whole v2, {label}: first query", f"{got[name]['first']:.2f} s")
                line(f"whole v2, {label}: best of {args.repeat}", f"{got[name]['best']:.2f} s")
            assert got["delta"]["rows"] == got["parquet"]["rows"] == args.rows


if __name__ == "__main__":
    main()
