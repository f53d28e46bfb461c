"""Bytes a column-sparse clone fetches (``ferry clone --columns``) against a full clone.

A keyed dataset of 10 columns of about equal width (``id``, the primary key, and nine
incompressible float64, int64 and text columns) with ``--rows`` rows is published and
served by ``ferry serve --store DIR --anonymous`` on loopback. Then a full clone and
clones of 2 of its 10 columns (``--columns id,f1``: the key and one more) and of 3
(``--columns f1,f2``: the key comes along) fetch it, and the bytes each received are
printed, with their share of the full clone's.

    python bench/sparse_clone.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

COLUMNS = {"id": "int64", **{f"f{i}": "float64" for i in range(1, 4)},
           **{f"n{i}": "int64" for i in range(1, 4)}, **{f"t{i}": "string" for i in range(1, 4)}}
MODEL = """\
team: shop
zone: eu
owners: [bench@example.com]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      wide:
        table: wide
        primary_key: [id]
        columns:
""" + "".join(f"          {name}: {{type: {kind}}}\n" for name, kind in COLUMNS.items())


def rows(count: int, seed: int) -> pa.Table:
    generator = np.random.default_rng(seed)
    data: dict[str, pa.Array] = {"id": pa.array(np.arange(1, count + 1), pa.int64())}
    for name, kind in COLUMNS.items():
        if name == "id":
            continue
        if kind == "float64":
            data[name] = pa.array(generator.random(count))
        elif kind == "int64":
            data[name] = pa.array(generator.integers(0, 2**62, count))
        else:
            data[name] = pa.array([f"{v:016x}"[:8] for v in
                                   generator.integers(0, 2**62, count).tolist()])
    return pa.table(data)


def _column_bytes(directory: Path, files: list[Any], columns: list[str] | None) -> int:
    """The bytes of the column chunks of ``columns`` and the key (None: whole files)."""
    import pyarrow.parquet as pq

    if columns is None:
        return sum(int(f.size) for f in files)
    wanted = {"id", *columns}
    total = 0
    for entry in files:
        metadata = pq.ParquetFile(directory / entry.path).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            total += sum(row_group.column(i).total_compressed_size
                         for i in range(row_group.num_columns)
                         if row_group.column(i).path_in_schema in wanted)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from dataferry.model.load import load_model
    from dataferry.replication.peer import Peer
    from dataferry.replication.sync import sync
    from dataferry.store.publish import publish
    from dataferry.store.store import Store

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-sparse-"))
    try:
        (work / "model" / "teams" / "shop").mkdir(parents=True)
        (work / "model" / "ferry.yaml").write_text("ecosystem: bench\nzones: {eu: {}}\n")
        (work / "model" / "teams" / "shop" / "shop.yaml").write_text(MODEL)
        loaded = load_model(work / "model")
        store = Store.for_model(loaded.root, loaded.ecosystem)
        spec = loaded.ecosystem.teams["shop"].sources["db"].datasets["wide"]
        dataset = store.dataset("shop.wide")
        publish(dataset, spec, rows(args.rows, 1), keys=store.keys, mode="replace")
        files = dataset.active_files(1)
        size = sum(f.size for f in files)
        print(f"dataset: {args.rows:,} rows, 10 columns, {len(files)} files, "
              f"{size / 1e6:.1f} MB")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ferry = Path(sys.executable).parent / "ferry"
        server = subprocess.Popen([str(ferry), "serve", "--store", str(store.root),
                                   "--anonymous", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{url}/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            fetched = {}
            for label, columns in (("full clone", None), ("--columns id,f1", ["id", "f1"]),
                                   ("--columns f1,f2", ["f1", "f2"])):
                target = work / label.replace(" ", "_").replace(",", "_")
                with Peer(url, "shop.wide") as peer:
                    result = sync(peer, Store(target, work).dataset("shop.wide"),
                                  columns=columns)
                fetched[label] = result.bytes_fetched
                share = result.bytes_fetched / fetched["full clone"]
                exact = _column_bytes(dataset.path, files, columns)
                print(f"{label:16} {result.bytes_fetched:>13,} bytes ({share:.1%} of full; "
                      f"those columns' chunks are {exact:,} bytes)")
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
