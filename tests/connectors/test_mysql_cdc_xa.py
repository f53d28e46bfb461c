"""MariaDB CDC and XA transactions, against a private ``mariadbd`` with the binlog on.

MariaDB writes an XA transaction's rows at ``XA PREPARE``; they must appear only once its
``XA COMMIT`` is read (in the same read or a later one), never after ``XA ROLLBACK``, and
``XA COMMIT ... ONE PHASE`` is an ordinary commit. The rows of a transaction prepared but
not decided survive a restart (a new process reading from the recorded position), and a
reader SIGKILLed between runs loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.connectors.mysql.cdc_xa import xa_decision, xid_text
from dataferry.errors import SourceError
from tests.connectors.mariadb_server import PrivateServer, start_private_server
from tests.connectors.test_mysql_cdc import ITEMS, ITEMS_DDL, REPO, changes, source


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    yield from start_private_server()


@pytest.fixture
def database(server: PrivateServer) -> Iterator[str]:
    yield from server.database("xa")


def rows_of(server: PrivateServer, database: str) -> dict[int, dict[str, Any]]:
    return {int(r[0]): {"id": int(r[0]), "name": r[1], "qty": int(r[2])} for r in server.execute(
        "SELECT id, name, qty FROM items", database=database)}


def test_a_prepared_transaction_appears_only_when_committed_in_a_later_run(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1)", database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.prepare_xa(database, "'t1'", "INSERT INTO items VALUES (2, 'xa', 2)",
                      "UPDATE items SET qty = 10 WHERE id = 1")
    server.execute("INSERT INTO items VALUES (3, 'plain', 3)", database=database)
    first, rows, deleted = changes(src, ITEMS, start.position)
    assert rows == {3: {"id": 3, "name": "plain", "qty": 3}} and deleted == []
    [held] = first.position["xa_prepared"]
    assert held["xid"] == "X'7431',X'',1"
    json.dumps(first.position)  # recorded in the signed manifest as it is
    # A new reader (a later run, another process) from the recorded position.
    server.execute("UPDATE items SET qty = 30 WHERE id = 3", database=database)
    server.execute("XA COMMIT 't1'")
    server.execute("UPDATE items SET name = 'after' WHERE id = 2", database=database)
    second, rows, deleted = changes(source(server, database), ITEMS, first.position)
    assert rows == {1: {"id": 1, "name": "a", "qty": 10}, 2: {"id": 2, "name": "after", "qty": 2},
                    3: {"id": 3, "name": "plain", "qty": 30}}
    assert "xa_prepared" not in second.position
    assert rows_of(server, database) == rows


def test_a_prepared_transaction_rolled_back_in_a_later_run_never_appears(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1)", database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.prepare_xa(database, "'t2', 'branch', 7", "INSERT INTO items VALUES (2, 'xa', 2)",
                      "DELETE FROM items WHERE id = 1")
    server.execute("INSERT INTO items VALUES (3, 'plain', 3)", database=database)
    first, rows, _ = changes(src, ITEMS, start.position)
    assert rows == {3: {"id": 3, "name": "plain", "qty": 3}}
    assert [xa["xid"] for xa in first.position["xa_prepared"]] == [
        "X'7432',X'6272616e6368',7"]
    server.execute("XA ROLLBACK 't2', 'branch', 7")
    server.execute("INSERT INTO items VALUES (4, 'plain', 4)", database=database)
    second, rows, deleted = changes(src, ITEMS, first.position)
    assert rows == {4: {"id": 4, "name": "plain", "qty": 4}} and deleted == []
    assert "xa_prepared" not in second.position
    third, rows, deleted = changes(src, ITEMS, second.position)
    assert rows == {} and deleted == []


def test_decided_in_the_same_read_and_one_phase_interleaved_with_plain_transactions(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)",
                   database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.prepare_xa(database, "'c'", "UPDATE items SET qty = 100 WHERE id = 1",
                      "INSERT INTO items VALUES (5, 'c', 5)")
    server.prepare_xa(database, "'r'", "UPDATE items SET qty = 200 WHERE id = 2",
                      "INSERT INTO items VALUES (6, 'r', 6)")
    # A plain transaction after the prepare (other rows: the prepared ones are locked).
    server.execute("INSERT INTO items VALUES (7, 'plain', 7)", database=database)
    server.execute("XA COMMIT 'c'")
    server.execute("UPDATE items SET qty = 101 WHERE id = 1", database=database)  # after it
    server.execute("XA ROLLBACK 'r'")
    with server.connect(database) as connection, connection.cursor() as cursor:
        cursor.execute("XA START 'one'")
        cursor.execute("INSERT INTO items VALUES (8, 'one', 8)")
        cursor.execute("XA END 'one'")
        cursor.execute("XA COMMIT 'one' ONE PHASE")
    found, rows, deleted = changes(src, ITEMS, start.position)
    assert rows == {1: {"id": 1, "name": "a", "qty": 101}, 5: {"id": 5, "name": "c", "qty": 5},
                    7: {"id": 7, "name": "plain", "qty": 7}, 8: {"id": 8, "name": "one", "qty": 8}}
    assert deleted == [] and "xa_prepared" not in found.position
    assert {k: v for k, v in rows_of(server, database).items() if k != 2} == rows


def test_a_prepared_transaction_of_another_table_is_not_held(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "CREATE TABLE other (id INT PRIMARY KEY)", database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.prepare_xa(database, "'o'", "INSERT INTO other VALUES (1)")
    server.execute("INSERT INTO items VALUES (1, 'a', 1)", database=database)
    found, rows, _ = changes(src, ITEMS, start.position)
    assert rows == {1: {"id": 1, "name": "a", "qty": 1}}
    assert "xa_prepared" not in found.position
    server.execute("XA COMMIT 'o'")


def test_a_transaction_prepared_before_the_snapshot_comes_at_its_commit(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1)", database=database)
    server.prepare_xa(database, "'early'", "INSERT INTO items VALUES (2, 'early', 2)")
    server.prepare_xa(database, "'gone'", "INSERT INTO items VALUES (3, 'gone', 3)")
    src = source(server, database)
    first, rows, _ = changes(src, ITEMS, None)
    assert first.snapshot is True and rows == {1: {"id": 1, "name": "a", "qty": 1}}
    assert sorted(xa["xid"] for xa in first.position["xa_prepared"]) == [
        "X'6561726c79',X'',1", "X'676f6e65',X'',1"]
    server.execute("XA COMMIT 'early'", "XA ROLLBACK 'gone'")
    _, rows, _ = changes(src, ITEMS, first.position)
    assert rows == {2: {"id": 2, "name": "early", "qty": 2}}


def test_a_held_transaction_whose_binlog_was_purged_says_what_to_do(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.prepare_xa(database, "'p'", "INSERT INTO items VALUES (1, 'p', 1)")
    server.execute("INSERT INTO items VALUES (2, 'plain', 2)", database=database)
    first, _, _ = changes(src, ITEMS, start.position)
    [held] = first.position["xa_prepared"]
    server.execute("XA COMMIT 'p'")
    server.execute("FLUSH BINARY LOGS")
    newest = server.execute("SHOW MASTER STATUS")[0][0]
    # The server keeps a binlog file a prepared transaction needs; it was committed now,
    # so the file can go once its checkpoint passes.
    deadline = time.monotonic() + 30
    while held["binlog_file"] in {r[0] for r in server.execute("SHOW BINARY LOGS")}:
        assert time.monotonic() < deadline, "the server kept the old binlog"
        server.execute(f"PURGE BINARY LOGS TO '{newest}'")
        time.sleep(0.2)
    moved = {**first.position, "binlog_file": newest, "binlog_pos": 4}  # only the XA is gone
    with pytest.raises(SourceError, match=r"prepared XA transaction X'70',X'',1 was purged"
                                          r".*ferry run --full shop.items"):
        changes(src, ITEMS, moved)
    problems = src.change_problems("shop.items", ITEMS, position=moved)
    assert any("the rows of the prepared XA transaction X'70',X'',1 was purged"
               in p.message for p in problems), problems


def test_a_read_of_only_a_held_transactions_rollback_is_not_skipped_later(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.prepare_xa(database, "'rb'", "INSERT INTO items VALUES (1, 'rb', 1)")
    server.execute("INSERT INTO items VALUES (2, 'plain', 2)", database=database)
    first, _, _ = changes(src, ITEMS, start.position)
    assert len(first.position["xa_prepared"]) == 1
    server.execute("XA ROLLBACK 'rb'")
    idle, rows, deleted = changes(src, ITEMS, first.position)
    assert rows == {} and deleted == []  # no version: the head keeps first.position
    idle.acknowledge()  # must not note the range as holding nothing of the table
    server.execute("INSERT INTO items VALUES (3, 'plain', 3)", database=database)
    later, rows, _ = changes(src, ITEMS, first.position)
    assert rows == {3: {"id": 3, "name": "plain", "qty": 3}}
    assert "xa_prepared" not in later.position


# --- SIGKILL between runs ---------------------------------------------------------------

_RUN = """
import json, sys
from pathlib import Path
from dataferry.connectors.base import ReadRequest
from dataferry.connectors.mysql import MysqlSource
from dataferry.model.spec import MysqlSource as Spec, SourceDataset
args = json.loads(sys.argv[1])
spec = SourceDataset.model_validate(args["dataset"])
src = MysqlSource("shop.db", Spec(kind="mysql", dsn=args["dsn"]), Path("."))
found = src.read_changes(ReadRequest("shop.items", spec, list(spec.columns), state=args["state"]))
rows = found.upserts.read_all().to_pylist()
print(json.dumps({"position": found.position, "rows": rows}), flush=True)
if args["hang"]:
    sys.stdin.read()
found.close()
"""


def _run(server: PrivateServer, database: str, state: dict[str, Any] | None,
         hang: bool) -> dict[str, Any]:
    """A read in a process of its own; with ``hang`` it is SIGKILLed after it printed
    what it read (a run killed before it publishes)."""
    args = json.dumps({"dsn": server.dsn(database), "state": state, "hang": hang,
                       "dataset": ITEMS.model_dump(mode="json")})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                        os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _RUN, args], cwd=REPO, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    if hang:
        child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=60)
    assert line, err
    assert child.returncode == (-signal.SIGKILL if hang else 0), err
    result: dict[str, Any] = json.loads(line)
    return result


def test_runs_killed_between_prepare_and_commit_lose_nothing(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1)", database=database)
    head = {r["id"]: r for r in _run(server, database, None, hang=False)["rows"]}
    state = _run(server, database, None, hang=False)["position"]
    server.prepare_xa(database, "'k'", "INSERT INTO items VALUES (2, 'k', 2)")
    server.execute("INSERT INTO items VALUES (3, 'plain', 3)", database=database)
    killed = _run(server, database, state, hang=True)  # read, never published
    assert [r["id"] for r in killed["rows"]] == [3]
    published = _run(server, database, state, hang=False)  # the same read again
    assert published["rows"] == killed["rows"]
    head.update({r["id"]: r for r in published["rows"]})
    state = published["position"]
    assert len(state["xa_prepared"]) == 1
    server.execute("XA COMMIT 'k'")
    _run(server, database, state, hang=True)  # killed after reading the commit
    final = _run(server, database, state, hang=False)
    head.update({r["id"]: r for r in final["rows"]})
    assert [r["id"] for r in final["rows"]] == [2]
    assert head == rows_of(server, database)


# --- parsing ----------------------------------------------------------------------------

@given(st.binary(max_size=64), st.binary(max_size=64), st.integers(0, 2**31 - 1),
       st.sampled_from(["COMMIT", "ROLLBACK", "commit"]))
def test_a_decision_names_the_xid_its_prepare_has(gtrid: bytes, bqual: bytes, format_id: int,
                                                   verb: str) -> None:
    xid = xid_text(gtrid, bqual, format_id)
    query = f"XA {verb} X'{gtrid.hex().upper()}',X'{bqual.hex()}',{format_id}"
    assert xa_decision(query) == (xid, verb.upper() == "COMMIT")
    assert xa_decision(f"XA END {xid}") is None
    assert xa_decision("COMMIT") is None


def test_xa_recover_is_allowed_to_the_replication_grants(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    user = f"u{uuid.uuid4().hex[:8]}"
    server.execute(f"CREATE USER '{user}'@'%'", f"GRANT SELECT ON {database}.* TO '{user}'@'%'",
                   f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'")
    server.prepare_xa(database, "'g'", "INSERT INTO items VALUES (1, 'g', 1)")
    try:
        first, rows, _ = changes(source(server, database, user), ITEMS, None)
        assert rows == {} and len(first.position["xa_prepared"]) == 1
    finally:
        server.execute("XA ROLLBACK 'g'", f"DROP USER '{user}'@'%'")

