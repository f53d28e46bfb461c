"""A PostgreSQL server of the tests' own with ``wal_level=logical`` (the shared server on
5432 is never reconfigured): initdb in a temporary directory as the ``postgres`` OS user,
started on a free port, stopped and removed at the end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.connectors.pg_helpers import free_port


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def logical_server() -> Iterator[str]:
    """A running server's base URL (``postgresql://postgres@127.0.0.1:<port>``)."""
    binaries = _binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if os.environ.get("FERRY_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="ferry-pg-logical-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres(str(binaries / "initdb"), "-D", str(data), "-A", "trust",
                                "-U", "postgres", "--no-sync", "-E", "UTF8"),
                   check=True, capture_output=True)
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
               "-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 "
               "-c fsync=off -c shared_buffers=32MB")
    subprocess.run(_as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-o", options,
                                "-l", str(root / "log"), "-w", "start"),
                   check=True, capture_output=True)
    url = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"{url}/postgres").close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run(_as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m",
                                    "immediate", "stop"), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def database(server: str) -> Iterator[str]:
    """A new database on ``server`` (its dsn), dropped with its slots at the end."""
    name = f"ferry_cdc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"create database {name}")
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute("select pg_drop_replication_slot(slot_name) from "
                          "pg_replication_slots where database = %s", (name,))
            admin.execute(f"drop database if exists {name} with (force)")
