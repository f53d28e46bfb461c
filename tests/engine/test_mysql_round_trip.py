"""MariaDB -> signed store -> MariaDB with ``ferry run``: every value of the issue-13 types
comes back exactly (the source's ConnectorX reader and the sink's piped LOAD DATA).

Decimals to the last digit (also beyond what ConnectorX's decimal holds), DATETIME(6)
microseconds at both ends of its range, TINYINT(1) declared ``bool``, INT UNSIGNED's
maximum, BIGINT's extremes, doubles, text with quotes, commas and new lines, NULLs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import Result, require_service, write_files

COLUMNS = ("id, account, amount, wide, label, created_at, day, active, score, hits, "
           "total")
DDL = """CREATE TABLE events (id BIGINT PRIMARY KEY, account INT, amount DECIMAL(12,2),
    wide DECIMAL(65,30), label VARCHAR(64), created_at DATETIME(6), day DATE,
    active TINYINT(1), score DOUBLE, hits INT UNSIGNED, total BIGINT UNSIGNED)"""
ROWS = """
(-9223372036854775808, -2147483648, -9999999999.99,
 '-12345678901234567890123456789012345.123456789012345678901234567890', 'first, "quoted"',
 '1000-01-01 00:00:00.000001', '1000-01-01', 1, 1.2345678901234567e-300, 4294967295,
 18446744073709551615),
(9223372036854775807, 2147483647, 9999999999.99, 0.000000000000000000000000000001,
 'vårt 👩‍👩‍👧\nnew line\ttab back\\\\slash', '9999-12-31 23:59:59.999999', '9999-12-31', 0,
 -1.7976931348623157e308, 0, 0),
(0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(5, 0, 0.01, -0.5, '', '2024-02-29 12:00:00.123456', '2024-02-29', 1, 0.1, 1, 1)
"""

TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  maria:
    kind: mysql
    dsn: mysql://root@127.0.0.1:3306/{db}
    datasets:
      events:
        table: events
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          account: {{type: int32}}
          amount: {{type: decimal(12,2)}}
          wide: {{type: decimal(65,30)}}
          label: {{type: string(64)}}
          created_at: {{type: timestamp}}
          day: {{type: date}}
          active: {{type: bool}}
          score: {{type: float64}}
          hits: {{type: uint32}}
          total: {{type: uint64}}
consumers:
  wh:
    sink: {{kind: mysql, dsn: "mysql://root@127.0.0.1:3306/{db}", schema: {db}_wh}}
    datasets:
      - {{ref: shop.events, mode: replace, table: events_copy}}
"""


def query(database: str, sql: str) -> list[tuple[Any, ...]]:
    with pymysql.connect(host="127.0.0.1", user="root", password="", database=database,
                         autocommit=True, charset="utf8mb4") as connection, \
            connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


@pytest.fixture
def database() -> Iterator[str]:
    require_service("mariadb")
    name = f"ferry_test_{uuid.uuid4().hex[:10]}"
    query("mysql", f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        query("mysql", f"DROP DATABASE IF EXISTS {name}")
        query("mysql", f"DROP DATABASE IF EXISTS {name}_wh")


def test_every_issue_13_type_comes_back_exactly(
        database: str, tmp_path: Path, ferry: Callable[..., Result]) -> None:
    query(database, DDL)
    query(database, "INSERT INTO events VALUES " + ROWS)
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM.format(db=database),
    })
    result = ferry("run", "--model", root)
    assert result.code == 0, result
    source = query(database, f"SELECT {COLUMNS} FROM events ORDER BY id")
    delivered = query(f"{database}_wh", f"SELECT {COLUMNS} FROM events_copy ORDER BY id")
    assert delivered == source
    assert len(delivered) == 4
    by_id = {row[0]: row for row in delivered}
    assert by_id[-(2**63)][9] == 4294967295 and by_id[2**63 - 1][5].microsecond == 999999
    assert by_id[-(2**63)][7] == 1 and by_id[2**63 - 1][7] == 0  # bool as TINYINT(1)
