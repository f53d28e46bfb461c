"""What the parquet sink's uuid and json logical types cost (issue 14 point 6).

Delivers ``--rows`` rows (id int64, a uuid, a json text, a string) through the parquet
sink in replace mode, and prints its time as a ratio against the baseline, run in the
same process: the same rows in the sink's earlier form (uuid and json as text) written
by ``pq.write_table``. Also the uuid text -> 16 bytes conversion alone, vectorized
(``to_sink_array``) against Python's ``uuid.UUID`` per value.

    python bench/parquet_sink_types.py [--rows N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.connectors.embedded import delivery, make_sink, schema

from dataferry.connectors.parquet.types import to_sink_array

COLUMNS = [("id", "int64", False), ("u", "uuid", True), ("j", "json", True),
           ("s", "string", True)]


def best(run: object, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    texts = [str(uuid.UUID(int=i * 2654435761 % (1 << 128))) for i in range(rows)]
    row_schema = schema(COLUMNS)
    batch = pa.RecordBatch.from_arrays([
        pa.array(range(rows), pa.int64()),
        pa.array([uuid.UUID(t).bytes for t in texts], pa.binary(16)),
        pa.array([f'{{"n":{i}}}' for i in range(rows)], pa.string()),
        pa.array([f"row {i}" for i in range(rows)], pa.string())], schema=row_schema)
    text_table = pa.table({"id": batch.column(0), "u": pa.array(texts), "j": batch.column(2),
                           "s": batch.column(3)})
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        baseline = best(lambda: pq.write_table(text_table, root / "base.parquet",
                                               compression="snappy"))
        version = iter(range(1, 100))

        def deliver() -> None:
            v = next(version)
            make_sink({"kind": "parquet", "path": "lake"}, root).deliver(
                delivery("replace", v, None, [batch], row_schema, columns=COLUMNS))
        sink = best(deliver)
    strings = pa.array(texts)
    vectorized = best(lambda: to_sink_array(strings, pa.uuid()))
    python = best(lambda: pa.array([uuid.UUID(t).bytes for t in texts], pa.binary(16)), 1)
    print(f"rows: {rows:,}")
    print(f"baseline: pq.write_table, uuid/json as text     {baseline:8.3f} s")
    print(f"parquet sink, uuid/json logical types           {sink:8.3f} s  "
          f"ratio {sink / baseline:.2f}x")
    print(f"uuid text -> 16 bytes, vectorized               {vectorized:8.3f} s  "
          f"{python / vectorized:.1f}x faster than uuid.UUID per value ({python:.3f} s)")


if __name__ == "__main__":
    main()
