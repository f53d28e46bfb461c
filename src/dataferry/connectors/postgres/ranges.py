"""Reading a large table as several COPY streams over key ranges, from one snapshot.

A full read of a big table with a single integer primary key is split into ranges of
the key, each read on its own connection in parallel. A coordinating transaction
exports its snapshot (``pg_export_snapshot``) and every reader starts its transaction
with ``SET TRANSACTION SNAPSHOT``, so all streams together see exactly the table as it was
at one moment, as a single ``COPY`` would.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dataferry.streams import read_ahead

PARALLEL_MIN_ROWS = 500_000
"""Tables estimated smaller than this are read in one stream."""
_INTEGERS = {20, 21, 23}  # int8, int2, int4 oids


def readers() -> int:
    """How many parallel streams (``FERRY_PG_READERS``; default: half the cores, 1 to 4).

    Each stream keeps about two cores busy: ADBC decoding its COPY data here, and its
    server backend (or, with a remote server, the store's Parquet encoding here). On a
    2-core machine with the server on it, 2 streams were slower than 1 (1M rows: 0.99 to
    1.34 s against 0.89 to 0.91 s; 5M rows: 3.3 to 4.7 s against 3.2 to 3.5 s).
    """
    try:
        given = int(os.environ.get("FERRY_PG_READERS", "0"))
    except ValueError:
        return 1
    return max(1, given or min(4, (os.cpu_count() or 1) // 2))


@dataclass(frozen=True)
class Plan:
    snapshot: str
    bounds: list[tuple[int, int]]  # inclusive key ranges


def plan(catalog: Any, relation: str, key: str, key_oid: int) -> tuple[Any, Plan] | None:
    """Open the coordinating transaction and split the key range; None: one stream is best.

    ``catalog`` is a psycopg connection (autocommit off); the caller must keep the returned
    transaction open until every reader has set its snapshot, then roll it back.
    """
    count = readers()
    if count < 2 or key_oid not in _INTEGERS:
        return None
    catalog.execute("begin isolation level repeatable read read only")
    estimate = catalog.execute(
        "select coalesce(reltuples, 0)::bigint from pg_class where oid = to_regclass(%s)",
        (relation,)).fetchone()
    if estimate is None or estimate[0] < PARALLEL_MIN_ROWS:
        catalog.execute("rollback")
        return None
    snapshot = catalog.execute("select pg_export_snapshot()").fetchone()[0]
    low, high = catalog.execute(f"select min({key}), max({key}) from {relation}").fetchone()
    if low is None:
        catalog.execute("rollback")
        return None
    step = max(1, (high - low + count) // count)
    bounds = [(start, min(start + step - 1, high)) for start in range(low, high + 1, step)]
    return catalog, Plan(snapshot, bounds)


def merged(streams: list[Callable[[], Iterator[pa.RecordBatch]]], started: threading.Barrier,
           depth: int = 8) -> Iterator[pa.RecordBatch]:
    """Yield the batches of every stream as they arrive (bounded: ``depth`` waiting); a
    failing stream breaks ``started`` so the other readers stop waiting for it. The
    readers start on the first batch asked for, not before."""
    yield from read_ahead(streams, depth=depth, name="ferry-pg-range",
                          on_error=lambda _: started.abort())
