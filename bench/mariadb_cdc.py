"""MariaDB CDC: how fast ``read_changes`` turns binlog row events into a change set, against
python-mysql-replication decoding the same events alone.

Starts a private ``mariadbd`` with the row-based binlog on (as the tests do:
``tests/connectors/mariadb_server.py``), takes the first snapshot of a table, then writes
``--rows`` inserts (default 200,000; bigint, varchar, int, decimal, datetime(6)) and
updates half of them, and prints the medians of ``--rounds`` (default 3) of:

  change set: ``MysqlSource.read_changes`` from the snapshot's position, every batch of
  upserts drained (row events per second; peak RSS of this process)
  library alone: ``BinLogStreamReader`` over the same range, each event's rows decoded
                                                          ratio change set / library <= 2x

The machine's load changes the absolute numbers; the ratio is what to compare.

    python bench/mariadb_cdc.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pymysqlreplication import BinLogStreamReader  # noqa: E402
from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent  # noqa: E402
from tests.connectors.mariadb_server import start_private_server  # noqa: E402

from dataferry.connectors.base import ReadRequest  # noqa: E402
from dataferry.connectors.mysql import MysqlSource  # noqa: E402
from dataferry.model.spec import Column, SourceDataset  # noqa: E402
from dataferry.model.spec import MysqlSource as Spec  # noqa: E402

COLUMNS = [("id", "int64"), ("name", "string"), ("qty", "int32"), ("amount", "decimal(12,2)"),
           ("at", "timestamp")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    servers = start_private_server()
    server = next(servers)
    try:
        run(server, args.rows, args.rounds)
    finally:
        servers.close()


def run(server: object, rows: int, rounds: int) -> None:
    from tests.connectors.mariadb_server import PrivateServer

    assert isinstance(server, PrivateServer)
    server.execute("CREATE DATABASE bench")
    server.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(50), qty INT, "
                   "amount DECIMAL(12,2), at DATETIME(6))", database="bench")
    spec = SourceDataset(table="items", capture="cdc", primary_key=["id"],
                         columns={n: Column(type=t, nullable=n != "id") for n, t in COLUMNS})
    source = MysqlSource("bench.db", Spec(kind="mysql", dsn=server.dsn("bench")), Path("."))
    first = source.read_changes(ReadRequest("bench.items", spec, list(spec.columns)))
    first.upserts.read_all()
    for start in range(0, rows, 10_000):
        server.execute("INSERT INTO items VALUES " + ",".join(
            f"({i}, 'name{i}', {i % 1000}, {i}.25, '2024-01-01 00:00:00.{i % 999_999:06d}')"
            for i in range(start, min(start + 10_000, rows))), database="bench")
    server.execute("UPDATE items SET qty = qty + 1 WHERE id % 2 = 0", database="bench")
    events = rows + rows // 2
    ours, library = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        found = source.read_changes(ReadRequest("bench.items", spec, list(spec.columns),
                                                state=first.position))
        upserts = sum(batch.num_rows for batch in found.upserts)
        found.close()
        ours.append(events / (time.perf_counter() - began))
        assert upserts == rows, upserts
        began = time.perf_counter()
        stream = BinLogStreamReader(
            {"host": "127.0.0.1", "port": server.port, "user": "root", "password": ""},
            server_id=4242, resume_stream=True, log_file=first.position["binlog_file"],
            log_pos=first.position["binlog_pos"], blocking=False,
            only_events=[WriteRowsEvent, UpdateRowsEvent], only_schemas=["bench"],
            only_tables=["items"], enable_logging=False)
        decoded = sum(len(event.rows) for event in stream)
        stream.close()
        library.append(decoded / (time.perf_counter() - began))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = statistics.median(library) / statistics.median(ours)
    print(f"{rows:,} inserts + {rows // 2:,} updates -> {rows:,} upserts")
    print(f"  change set:    {statistics.median(ours):>10,.0f} row events/s "
          f"(peak RSS {peak:,.0f} MiB)")
    print(f"  library alone: {statistics.median(library):>10,.0f} row events/s")
    print(f"  ratio:         {ratio:.2f}x  (target <= 2x)")


if __name__ == "__main__":
    main()
