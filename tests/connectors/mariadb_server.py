"""A private MariaDB server for tests that need one configured differently from the shared
one on 3306 (the binlog on, row-based): ``mariadb-install-db`` into a temporary directory,
``mariadbd`` on a free port with its socket there, removed when the test session ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

BINLOG = ("--log-bin=binlog", "--binlog-format=ROW", "--server-id=1",
          "--binlog-row-image=FULL", "--binlog-row-metadata=FULL")
"""What ``capture: cdc`` needs (docs/connectors.md#mariadb-cdc)."""


@dataclass
class PrivateServer:
    """A running ``mariadbd``: root without a password over TCP on ``port``."""

    port: int
    datadir: Path
    process: subprocess.Popen[bytes]

    def connect(self, database: str | None = None, user: str = "root",
                password: str = "") -> pymysql.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               database=database, autocommit=True, charset="utf8mb4")

    def execute(self, *statements: str, database: str | None = None) -> list[tuple[object, ...]]:
        with self.connect(database) as connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return list(cursor.fetchall())

    def dsn(self, database: str, user: str = "root") -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/{database}"

    def database(self, prefix: str) -> Iterator[str]:
        """A database of the test's own (``<prefix>_<random>``, utf8mb4), dropped after:
        ``yield from`` it in a fixture."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        try:
            yield name
        finally:
            self.execute(f"DROP DATABASE IF EXISTS {name}")

    def prepare_xa(self, database: str, xid: str, *statements: str) -> None:
        """Run ``statements`` in XA transaction ``xid`` and prepare it (its session ends:
        the prepared transaction stays on the server until decided)."""
        with self.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute(f"XA START {xid}")
            for statement in statements:
                cursor.execute(statement)
            cursor.execute(f"XA END {xid}")
            cursor.execute(f"XA PREPARE {xid}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _missing(what: str) -> None:
    message = f"{what} is not installed (apt-get install mariadb-server)"
    if os.environ.get("FERRY_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def start_private_server(options: Sequence[str] = BINLOG) -> Iterator[PrivateServer]:
    """Install, start and (after the ``yield``) stop and remove a private server."""
    install = shutil.which("mariadb-install-db")
    daemon = shutil.which("mariadbd") or ("/usr/sbin/mariadbd"
                                          if Path("/usr/sbin/mariadbd").exists() else None)
    if install is None or daemon is None:
        _missing("mariadb-install-db/mariadbd")
    assert install is not None and daemon is not None
    root = Path(tempfile.mkdtemp(prefix="ferry-mariadb-"))
    datadir = root / "data"
    user = ["--user=root"] if os.geteuid() == 0 else []
    try:
        subprocess.run([install, "--no-defaults", f"--datadir={datadir}", *user,
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=300)
        port = _free_port()
        process = subprocess.Popen(
            [daemon, "--no-defaults", f"--datadir={datadir}", *user, f"--port={port}",
             "--bind-address=127.0.0.1", f"--socket={root / 'mysqld.sock'}",
             f"--pid-file={root / 'mysqld.pid'}", f"--log-error={root / 'error.log'}",
             "--innodb-buffer-pool-size=32M", "--skip-name-resolve", *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = PrivateServer(port, datadir, process)
        deadline = time.monotonic() + 120
        while True:
            try:
                server.connect().close()
                break
            except pymysql.Error:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (root / "error.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"mariadbd did not start: {log}") from None
                time.sleep(0.2)
        try:
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
