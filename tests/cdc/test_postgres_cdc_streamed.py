"""PostgreSQL CDC with large transactions streamed before their commit (pgoutput protocol
version 2, ``streaming 'on'``; ``connectors/postgres/cdc_streamed.py``), against a server
of the tests' own. The walsender's ``logical_decoding_work_mem`` is set to its minimum
(64kB) so a few thousand rows make a transaction it streams in chunks; each test checks
that the server did stream (``pg_stat_replication_slots``) and that the store then holds
exactly the source's committed rows: a streamed transaction counts only at its commit,
never when aborted, without its rolled-back savepoints, and whole in a later run when it
is still open at a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from dataferry.connectors.postgres import cdc
from tests.cdc.logical_server import database
from tests.cdc.test_postgres_cdc import (
    AMOUNT,
    DDL,
    SLOT,
    execute,
    fetch,
    make_model,
    server,
    source_rows,
    stored,
    versions,
)
from tests.conftest import Result

__all__ = ["server"]  # the module's server fixture, shared

ROWS = 3_000
"""Rows of a large transaction: about 600 kB decoded, streamed in chunks of 64kB."""
INSERT = ("insert into orders select i, 'row ' || i || repeat('x', 100), {amount}, "
          "'2026-01-01'::timestamptz + i * interval '1 minute', null, null "
          "from generate_series({first}, {last}) i")


@pytest.fixture(params=sorted(AMOUNT))
def source(server: str, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(cdc, "STREAM_MEMORY", "64kB")
    if request.param == "spilled":
        monkeypatch.setattr(cdc, "STAGE_ROWS", 300)
        monkeypatch.setattr(cdc, "KEEP_BYTES", 20_000)
    with database(server) as dsn:
        execute(dsn, DDL.format(amount=AMOUNT[request.param][0]))
        yield dsn


def insert(first: int, last: int, amount: str = "i") -> str:
    return INSERT.format(first=first, last=last, amount=amount)


def streamed(dsn: str) -> int:
    """Transactions the slot has streamed so far (the statistics lag a little)."""
    rows = fetch(dsn, "select stream_txns from pg_stat_replication_slots "
                      f"where slot_name = '{SLOT}'")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def wait_streamed(dsn: str, more_than: int) -> int:
    deadline = time.monotonic() + 20
    while (count := streamed(dsn)) <= more_than:
        assert time.monotonic() < deadline, "the server streamed no transaction"
        time.sleep(0.2)
    return count


def run(ferry: Callable[..., Result], root: Path) -> None:
    result = ferry("run", "shop.orders", "--model", root)
    assert result.code == 0, result


def test_a_streamed_transaction_committed_lands_whole(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    execute(source, insert(1, 10))
    run(ferry, root)
    before = streamed(source)
    with psycopg.connect(source) as connection:  # one transaction
        connection.execute(insert(11, 10 + ROWS))
        connection.execute("update orders set name = 'changed' where id <= 5")
        connection.execute("delete from orders where id between 6 and 8")
        connection.execute("update orders set id = id + 100000 where id = 9")  # a key change
    execute(source, insert(50_000, 50_010))  # a plain transaction after it
    run(ferry, root)
    wait_streamed(source, before)
    assert stored(root) == source_rows(source)
    assert len(stored(root)) == 10 + ROWS + 11 - 3


def test_an_aborted_streamed_transaction_never_appears(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    execute(source, insert(1, 10))
    run(ferry, root)
    before = streamed(source)
    with psycopg.connect(source) as connection:  # (the server may skip it itself)
        connection.execute(insert(11, 10 + ROWS))
        connection.execute("update orders set name = 'never' where id <= 10")
        connection.execute("delete from orders where id = 1")
        connection.rollback()
    execute(source, "update orders set name = 'kept' where id = 2")
    run(ferry, root)
    wait_streamed(source, before)
    assert stored(root) == source_rows(source)
    assert [r[1] for r in stored(root)][:2] == [fetch(source, "select name from orders "
                                                             "where id = 1")[0][0], "kept"]
    assert len(versions(root)) == 2


def test_a_rolled_back_savepoint_of_a_streamed_transaction_is_left_out(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    execute(source, insert(1, 10))
    run(ferry, root)
    before = streamed(source)
    with psycopg.connect(source) as connection:
        connection.execute(insert(11, 10 + ROWS))
        connection.execute("savepoint s1")
        connection.execute(insert(20_001, 20_000 + ROWS))  # streamed, then rolled back
        connection.execute("update orders set name = 'rolled back' where id <= 20")
        connection.execute("savepoint s2")  # nested: rolled back with s1
        connection.execute("delete from orders where id <= 5")
        connection.execute("rollback to savepoint s1")
        connection.execute("savepoint s3")
        connection.execute("update orders set name = 'kept' where id = 3")
        connection.execute("release savepoint s3")
        connection.execute(insert(30_001, 30_000 + ROWS))
    run(ferry, root)
    wait_streamed(source, before)
    assert stored(root) == source_rows(source)
    ids = {r[0] for r in stored(root)}
    assert not ids & set(range(20_001, 20_001 + ROWS)) and {1, 5, 30_001} <= ids


def test_a_streamed_transaction_open_across_a_run_comes_whole_in_the_next(
        source: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_model(tmp_path, source)
    execute(source, insert(1, 10))
    run(ferry, root)
    before = streamed(source)
    with psycopg.connect(source) as open_transaction:
        open_transaction.execute(insert(11, 10 + ROWS))
        open_transaction.execute("update orders set name = 'open' where id <= 3")
        execute(source, "update orders set name = 'committed' where id = 9")
        run(ferry, root)  # streams the open transaction's chunks: dropped
        assert stored(root) == source_rows(source)
        assert len(stored(root)) == 10
        open_transaction.execute(insert(10_001, 10_000 + ROWS))
        open_transaction.commit()
    wait_streamed(source, before)
    run(ferry, root)
    assert stored(root) == source_rows(source)
    assert len(stored(root)) == 10 + 2 * ROWS


def test_a_value_that_does_not_fit_stops_the_run_only_if_its_transaction_commits(
        empty: str, tmp_path: Path, ferry: Callable[..., Result],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdc, "STREAM_MEMORY", "64kB")
    execute(empty, DDL.format(amount="float8"))
    root = make_model(tmp_path, empty)
    run(ferry, root)
    infinite = ("insert into orders select i, repeat('x', 100), 1, 'infinity', null, null "
                "from generate_series(1, 3000) i")
    before = streamed(empty)
    with psycopg.connect(empty) as connection:
        connection.execute(infinite)  # open during the run: streamed, not committed
        execute(empty, insert(5_001, 5_010))
        run(ferry, root)
        wait_streamed(empty, before)
        assert stored(root) == source_rows(empty)
        connection.rollback()
    run(ferry, root)
    execute(empty, infinite)
    stopped = ferry("run", "shop.orders", "--model", root)
    assert stopped.code != 0
    assert "column at has infinity or a value beyond Arrow's range" in \
        stopped.out + stopped.err, stopped


@pytest.fixture
def empty(server: str) -> Iterator[str]:
    with database(server) as dsn:
        yield dsn


def test_sigkill_while_a_large_transaction_streams_loses_nothing(
        empty: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    execute(empty, DDL.format(amount="float8"))
    # The run in another process: the database's setting makes its walsender stream.
    name = fetch(empty, "select current_database()")[0][0]
    execute(empty, f"alter database {name} set logical_decoding_work_mem = '64kB'")
    root = make_model(tmp_path, empty)
    run(ferry, root)
    with psycopg.connect(empty) as connection:
        connection.execute(insert(1, 12_000))
        connection.execute("update orders set name = 'changed' where id % 7 = 0")
    crashed = subprocess.run(
        [sys.executable, "-m", "dataferry.cli", "run", "shop.orders", "--model", str(root)],
        env={**os.environ, "FERRY_CRASH_AT": "cdc-streaming"}, capture_output=True,
        text=True, timeout=300)
    assert crashed.returncode == -9, crashed.stderr
    assert streamed(empty) > 0 or wait_streamed(empty, 0)
    run(ferry, root)
    assert stored(root) == source_rows(empty)
    assert len(stored(root)) == 12_000
