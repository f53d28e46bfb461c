"""Replication on loopback: clone throughput against a plain HTTP download of the same
files from the same server, the bytes a pull moves after a 1% append and a 1% merge,
and the peak memory of ``ferry clone``.

A store with ``--rows`` rows (default 1,000,000; an incompressible text column, so the
files are as large as the data) is published as version 1, served by
``ferry serve --store DIR --anonymous`` on a free loopback port, and then:

  - download: every file a clone fetches (data files and the Delta commit), streamed
    with httpx to disk, no checks: the baseline;
  - clone: ``sync`` of a new clone (genesis, manifests, files, every hash checked),
    in this process like the baseline; best of ``--repeat`` runs each, alternating;
  - pull after a 1% append, and after a 1% merge of random rows (deletion vectors):
    the bytes received, against the dataset's bytes;
  - ``ferry clone`` as its own process: its peak RSS.

    python bench/replication.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

MODEL = """\
team: shop
zone: eu
owners: [bench@example.com]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        max_delete_ratio: 1
        columns:
          id: {type: int64, nullable: false}
          customer: {type: string}
          amount: {type: float64}
"""


def rows(ids: np.ndarray, seed: int) -> pa.Table:
    generator = np.random.default_rng(seed)
    text = generator.integers(0, 2**63, size=(len(ids), 2), dtype=np.int64)
    customer = [f"{a:016x}{b:016x}" for a, b in text.tolist()]
    return pa.table({"id": pa.array(ids, pa.int64()), "customer": customer,
                     "amount": generator.random(len(ids))})


def _hwm_kib(pid: int) -> int:
    """A live process's peak resident memory so far (Linux VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmHWM:")), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from dataferry.model.load import load_model
    from dataferry.replication.peer import Peer
    from dataferry.replication.sync import sync
    from dataferry.store.publish import publish
    from dataferry.store.store import Store

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-replication-"))
    try:
        (work / "model" / "teams" / "shop").mkdir(parents=True)
        (work / "model" / "ferry.yaml").write_text("ecosystem: bench\nzones: {eu: {}}\n")
        (work / "model" / "teams" / "shop" / "shop.yaml").write_text(MODEL)
        loaded = load_model(work / "model")
        store = Store.for_model(loaded.root, loaded.ecosystem)
        spec = loaded.ecosystem.teams["shop"].sources["db"].datasets["orders"]
        dataset = store.dataset("shop.orders")

        def put(table: pa.Table, mode: str) -> None:
            publish(dataset, spec, table, keys=store.keys, mode=mode)  # type: ignore[arg-type]

        put(rows(np.arange(1, args.rows + 1), 1), "replace")
        files = dataset.active_files(1)
        size = sum(f.size for f in files)
        delta = dataset.version(1).manifest.delta_commit["version"]
        paths = [f.path for f in files] + [f"_delta_log/{int(delta):020d}.json"]
        print(f"dataset: {args.rows:,} rows, {len(files)} files, {size / 1e6:.1f} MB")

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
            base = f"{url}/api/v1/replication/shop.orders/files/"

            def download() -> float:
                target = work / "download"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                started = time.perf_counter()
                # plain http: no TLS context to build (the clone's peer builds none either)
                with httpx.Client(timeout=60, verify=False) as client:
                    for index, path in enumerate(paths):
                        with client.stream("GET", base + path) as answer, \
                                (target / str(index)).open("wb") as out:
                            for block in answer.iter_bytes(1 << 20):
                                out.write(block)
                return time.perf_counter() - started

            def clone() -> float:
                target = work / "clone"
                shutil.rmtree(target, ignore_errors=True)
                started = time.perf_counter()
                with Peer(url, "shop.orders") as peer:
                    sync(peer, Store(target, work).dataset("shop.orders"))
                return time.perf_counter() - started

            plain, cloned = [], []
            for _ in range(args.repeat):
                plain.append(download())
                cloned.append(clone())
            best_plain, best_clone = min(plain), min(cloned)
            print(f"plain download: {best_plain:.2f} s ({size / best_plain / 1e6:.0f} MB/s)")
            print(f"clone:          {best_clone:.2f} s ({size / best_clone / 1e6:.0f} MB/s)")
            print(f"clone throughput / plain download: {best_plain / best_clone:.2f}")

            with Peer(url, "shop.orders") as peer:
                put(rows(np.arange(args.rows + 1, args.rows * 101 // 100 + 1), 2), "append")
                appended = sync(peer, Store(work / "clone", work).dataset("shop.orders"))
                total = sum(f.size for f in dataset.active_files(2))
                print(f"pull after a 1% append: {appended.bytes_fetched:,} bytes of "
                      f"{total:,} ({appended.bytes_fetched / total:.2%})")
                changed = np.array(random.Random(3).sample(range(1, args.rows + 1),
                                                           args.rows // 100))
                put(rows(changed, 3), "merge")
                merged = sync(peer, Store(work / "clone", work).dataset("shop.orders"))
                total = sum(f.size for f in dataset.active_files(3))
                print(f"pull after a 1% merge:  {merged.bytes_fetched:,} bytes of "
                      f"{total:,} ({merged.bytes_fetched / total:.2%})")

            shutil.rmtree(work / "child", ignore_errors=True)
            child = subprocess.Popen([str(ferry), "clone", f"{url}/shop.orders",
                                      str(work / "child")], stdout=subprocess.DEVNULL)
            peak = 0
            while child.poll() is None:
                peak = max(peak, _hwm_kib(child.pid))
                time.sleep(0.02)
            print(f"ferry clone peak RSS: {peak / 1024:.0f} MiB")
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
