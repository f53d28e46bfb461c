"""An ingest through a gateway agent on loopback, against the same ingest run directly.

Builds a table of ``--rows`` (default 1,000,000) rows in a scratch database on
127.0.0.1:5432 and two identical models over it, one whose source is in network ``lan``
(a ``ferry serve`` hub and a ``ferry agent`` on loopback), and prints:

  ingest through the agent (queue, read, Parquet, upload, hash, publish on the hub)
    / the same ingest with the source reached directly                    target <= 2x

Timings on a shared machine are noisy: run it twice, and read the ratio, not the seconds.

    python bench/agent_flow.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FERRY = str(Path(sys.executable).with_name("ferry"))
ECOSYSTEM = """\
ecosystem: bench
zones: {{main: {{}}}}
platforms:
  local: {{engine: duckdb}}
  lan: {{engine: duckdb, network: lan}}
"""
TEAM = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  pg:
    kind: postgres
    {network}
    dsn: postgresql://postgres@127.0.0.1:5432/{db}
    datasets:
      events:
        table: public.events
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          account: {{type: int32}}
          amount: {{type: decimal(12,2)}}
          label: {{type: string}}
          at: {{type: timestamp_tz}}
"""


def model(root: Path, db: str, network: str) -> Path:
    (root / "teams" / "bench").mkdir(parents=True)
    (root / "ferry.yaml").write_text(ECOSYSTEM.format())
    (root / "teams" / "bench" / "bench.yaml").write_text(TEAM.format(network=network, db=db))
    return root


def ferry(*args: str) -> str:
    done = subprocess.run([FERRY, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ferry {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def timed_run(root: Path, *extra: str) -> float:
    started = time.monotonic()
    ferry("run", "bench.events", "--model", str(root), *extra)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    db = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"create database {db}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}",
                             autocommit=True) as conn:
            conn.execute("create table events (id bigint primary key, account int, "
                         "amount numeric(12,2), label text, at timestamptz)")
            conn.execute("insert into events select g, g % 1000, (g % 100000) / 100.0, "
                         "md5(g::text), now() - g * interval '1 second' "
                         f"from generate_series(1, {rows}) g")
        with tempfile.TemporaryDirectory() as scratch:
            direct = model(Path(scratch) / "direct", db, "")
            remote = model(Path(scratch) / "remote", db, "network: lan")
            direct_seconds = timed_run(direct)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            log = open(Path(scratch) / "hub.log", "wb")  # noqa: SIM115 - closed below
            processes.append(subprocess.Popen(
                [FERRY, "serve", "--no-scheduler", "--port", str(port), "--model", str(remote)],
                stdout=log, stderr=subprocess.STDOUT))
            token = json.loads(ferry("agents", "enroll", "lan", "--json", "--model",
                                     str(remote)))["token"]
            processes.append(subprocess.Popen(
                [FERRY, "agent", "--hub", f"http://127.0.0.1:{port}", "--token", token,
                 "--home", str(Path(scratch) / "agent")], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ}))
            time.sleep(3)  # the hub starts and the agent enrolls
            agent_seconds = timed_run(remote, "--agent-wait", "60s")
            log.close()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"drop database if exists {db} with (force)")
    print(f"rows: {rows:,}")
    print(f"ingest, source reached directly: {direct_seconds:.2f} s")
    print(f"ingest through the agent:        {agent_seconds:.2f} s")
    print(f"ratio agent / direct: {agent_seconds / direct_seconds:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
