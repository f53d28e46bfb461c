"""Shared helpers of the PostgreSQL connector tests: a database of their own, a server
that refuses logins, a port with nothing listening."""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tests.conftest import require_service

SERVER = "postgresql://postgres@127.0.0.1:5432"
SECRET = "s3cret-Value!"


@contextmanager
def temporary_database() -> Iterator[str]:
    """A new database ``ferry_test_<random>`` (its dsn), dropped at the end."""
    require_service("postgres")
    name = f"ferry_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"create database {name}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"drop database if exists {name} with (force)")


def rows_of(db: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return list(db.execute(query).fetchall())


def free_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refusing_server() -> int:
    """A server that asks for a password and rejects it, as PostgreSQL does (28P01)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            with client:
                length = struct.unpack("!i", client.recv(4))[0]
                body = client.recv(length - 4)
                while struct.unpack("!i", body[:4])[0] in (80877103, 80877104):
                    client.sendall(b"N")  # no SSL, no GSS encryption
                    length = struct.unpack("!i", client.recv(4))[0]
                    body = client.recv(length - 4)
                client.sendall(b"R" + struct.pack("!ii", 8, 3))  # cleartext password
                client.recv(4096)
                fields = (b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for "
                          b"user \"reader\"\0\0")
                client.sendall(b"E" + struct.pack("!i", 4 + len(fields)) + fields)

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])
