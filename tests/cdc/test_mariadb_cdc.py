"""``capture: cdc`` on MariaDB, end to end with ``ferry run``, against a private ``mariadbd``
with the row-based binlog on (``tests/connectors/mariadb_server.py``): what the store
holds after each run is compared with the source table, also after a run SIGKILLed at
every step (while reading the binlog, writing, committing, signing, acknowledging)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dataferry.model.load import load_model
from dataferry.store.store import Store
from tests.conftest import Result, write_files
from tests.connectors.mariadb_server import PrivateServer, start_private_server

TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  maria:
    kind: mysql
    dsn: {dsn}
    datasets:
      orders:
        table: orders
        capture: cdc
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
          amount: {{type: decimal(12,2)}}
          at: {{type: timestamp}}
"""
DDL = ("CREATE TABLE orders (id BIGINT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(12,2), "
       "at DATETIME(6), note TEXT)")


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    yield from start_private_server()


@pytest.fixture
def source(server: PrivateServer) -> Iterator[tuple[PrivateServer, str]]:
    for name in server.database("cdc"):
        server.execute(DDL, database=name)
        yield server, name


def make_model(tmp_path: Path, server: PrivateServer, database: str) -> Path:
    return write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM.format(dsn=server.dsn(database)),
    })


def _dataset(root: Path) -> Any:
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return Store.for_model(root, loaded.ecosystem).dataset("shop.orders")


def stored(root: Path) -> list[tuple[Any, ...]]:
    dataset = _dataset(root)
    head = dataset.head()
    assert head is not None
    rows = dataset.reader(head).read_all().to_pylist()
    return sorted((r["id"], r["name"], r["amount"], r["at"]) for r in rows)


def source_rows(server: PrivateServer, database: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in server.execute("SELECT id, name, amount, at FROM orders",
                                                   database=database))


def versions(root: Path) -> list[dict[str, Any]]:
    return [{"version": v.number, "cursor": v.manifest.cursor, "added": v.manifest.added_rows,
             "removed": v.manifest.removed_rows} for v in _dataset(root).versions()]


def test_changes_become_one_keyed_version_per_run(
        source: tuple[PrivateServer, str], tmp_path: Path, ferry: Callable[..., Result]) -> None:
    server, database = source
    server.execute(*(f"INSERT INTO orders VALUES ({i}, 'n{i}', {i}.50, "
                     f"'2026-01-01 00:00:0{i}.123456', 'x')" for i in range(1, 6)),
                   database=database)
    root = make_model(tmp_path, server, database)
    first = ferry("run", "shop.orders", "--model", root)
    assert first.code == 0, first
    assert stored(root) == source_rows(server, database) and len(stored(root)) == 5
    assert stored(root)[0][2] == Decimal("1.50")
    assert versions(root)[0]["cursor"]["binlog_file"].startswith("binlog.")

    server.execute(
        "INSERT INTO orders VALUES (6, 'six', 6.00, NOW(6), NULL)",
        "UPDATE orders SET name = 'two' WHERE id = 2",
        "DELETE FROM orders WHERE id = 3",
        "UPDATE orders SET id = 40 WHERE id = 4",  # a key change: delete 4, upsert 40
        "BEGIN", "INSERT INTO orders VALUES (7, 'rolled back', 1, NOW(), NULL)", "ROLLBACK",
        "UPDATE orders SET amount = 10.01 WHERE id = 5",
        "UPDATE orders SET amount = 10.02 WHERE id = 5",  # twice: the last
        "INSERT INTO orders VALUES (8, 'gone', 1, NOW(), NULL)",
        "DELETE FROM orders WHERE id = 8",  # inserted and deleted in one run: nothing
        "UPDATE orders SET note = 'not declared' WHERE id = 1",  # an undeclared column
        database=database)
    second = ferry("run", "shop.orders", "--model", root)
    assert second.code == 0, second
    assert stored(root) == source_rows(server, database)
    assert [r[0] for r in stored(root)] == [1, 2, 5, 6, 40]
    head = versions(root)[-1]
    assert head["version"] == 2
    assert head["cursor"]["binlog_pos"] > versions(root)[0]["cursor"]["binlog_pos"]
    # upserts of 1 (its undeclared column changed: the log says it changed), 2, 5, 6, 40;
    # deletes of 3, 4
    assert (head["added"], head["removed"]) == (5, 5)

    third = ferry("run", "shop.orders", "--model", root)  # nothing changed: no version
    assert third.code == 0 and len(versions(root)) == 2
    lag = json.loads(ferry("datasets", "--model", root, "--json").out)[0]["lag"]
    assert (lag["bytes"], lag["seconds"]) == (0, 0.0)  # caught up
    server.execute("INSERT INTO orders VALUES (9, 'nine', 9, NOW(6), NULL)", database=database)
    lag = json.loads(ferry("datasets", "--model", root, "--json").out)[0]["lag"]
    assert lag["bytes"] > 0 and lag["seconds"] >= 0  # binlog written after the head's position


CRASH_POINTS = ["mysql-cdc-mid-read", "write-file", "after-commit", "before-signature",
                "cdc-before-acknowledge"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_anywhere_loses_and_duplicates_nothing(
        source: tuple[PrivateServer, str], tmp_path: Path, ferry: Callable[..., Result],
        point: str) -> None:
    server, database = source
    server.execute("INSERT INTO orders VALUES " + ", ".join(
        f"({i}, 'n', 1, '2026-01-01 00:00:00', NULL)" for i in range(1, 51)), database=database)
    root = make_model(tmp_path, server, database)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    server.execute("UPDATE orders SET name = 'changed' WHERE id <= 10",
                   "DELETE FROM orders WHERE id BETWEEN 40 AND 45",
                   "INSERT INTO orders VALUES (99, 'new', 1, '2026-01-02 00:00:00', NULL)",
                   database=database)
    crashed = subprocess.run(
        [sys.executable, "-m", "dataferry.cli", "run", "shop.orders", "--model", str(root)],
        env={**os.environ, "FERRY_CRASH_AT": point}, capture_output=True, text=True,
        timeout=300)
    assert crashed.returncode == -9, crashed.stderr
    server.execute("INSERT INTO orders VALUES (200, 'after the crash', 1, "
                   "'2026-01-03 00:00:00', NULL)", database=database)
    again = ferry("run", "shop.orders", "--model", root)
    assert again.code == 0, again
    assert stored(root) == source_rows(server, database)
    published = versions(root)
    # the crashed run's version, if it was signed, is followed by one with row 200 only
    assert len(published) == (3 if point == "cdc-before-acknowledge" else 2)
    assert published[-1]["added"] == (1 if point == "cdc-before-acknowledge" else 12)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_xa_transactions_decided_runs_later_survive_a_sigkill_anywhere(
        source: tuple[PrivateServer, str], tmp_path: Path, ferry: Callable[..., Result],
        point: str) -> None:
    server, database = source
    server.execute("INSERT INTO orders VALUES (1, 'one', 1, '2026-01-01 00:00:00', NULL)",
                   database=database)
    root = make_model(tmp_path, server, database)
    assert ferry("run", "shop.orders", "--model", root).code == 0
    server.prepare_xa(database, "'keep'", "INSERT INTO orders VALUES (2, 'xa', 2, NOW(), NULL)",
                      "UPDATE orders SET name = 'by xa' WHERE id = 1")
    server.prepare_xa(database, "'drop'", "INSERT INTO orders VALUES (3, 'never', 3, NOW(), "
                                                  "NULL)")
    server.execute("INSERT INTO orders VALUES (4, 'plain', 4, NOW(), NULL)", database=database)
    crashed = subprocess.run(
        [sys.executable, "-m", "dataferry.cli", "run", "shop.orders", "--model", str(root)],
        env={**os.environ, "FERRY_CRASH_AT": point}, capture_output=True, text=True,
        timeout=300)
    assert crashed.returncode == -9, crashed.stderr
    run = ferry("run", "shop.orders", "--model", root)
    assert run.code == 0, run
    assert [r[0] for r in stored(root)] == [1, 4]  # the prepared rows are held
    assert stored(root)[0][1] == "one"
    assert len(versions(root)[-1]["cursor"]["xa_prepared"]) == 2  # in the signed manifest
    server.execute("XA COMMIT 'keep'", "XA ROLLBACK 'drop'")
    assert ferry("run", "shop.orders", "--model", root).code == 0
    assert stored(root) == source_rows(server, database)
    assert [r[0] for r in stored(root)] == [1, 2, 4]
    assert "xa_prepared" not in versions(root)[-1]["cursor"]
