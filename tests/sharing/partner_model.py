"""A shop whose orders two consumers take: ``mirror`` whole (and a count by country),
``partner`` with ``columns``,
``where`` and ``mask``; both deliver to SQLite sinks, so a test can compare what a share
serves with what the sink got. Two versions: the second updates, deletes and adds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dataferry.cli.main import invoke
from tests.conftest import write_files

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          amount: {type: decimal(12,2)}
          email: {type: string}
          country: {type: string}
transformers:
  by_country:
    inputs: [shop.orders]
    sql: select country, count(*) as orders from orders group by country
    columns: {country: string, orders: int64}
consumers:
  mirror:
    sink: {kind: sqlite, path: out/mirror.db}
    datasets:
      - {ref: shop.orders}
      - {ref: shop.by_country}
  partner:
    sink: {kind: sqlite, path: out/partner.db}
    datasets:
      - {ref: shop.orders, columns: [id, amount, email], where: "country = 'de'",
         mask: [email]}
"""


def make_partner_model(root: Path) -> Path:
    """The model in ``root``, run twice (versions 1 and 2 of shop.orders delivered)."""
    write_files(root, {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                       "teams/shop/shop.yaml": TEAM})
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table orders (id integer primary key, amount text, email text, "
                   "country text)")
        db.executemany("insert into orders values (?, ?, ?, ?)", [
            (i, f"{i * 1.5:.2f}", f"u{i}@x.example", "de" if i % 2 else "fr")
            for i in range(1, 41)])
    db.close()
    assert invoke(["run", "--model", str(root)]) == 0
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("update orders set amount = '99.00' where id = 3")
        db.execute("delete from orders where id = 5")
        db.execute("insert into orders values (41, '1.00', 'new@x.example', 'de')")
    db.close()
    assert invoke(["run", "--model", str(root)]) == 0
    return root


def sink_rows(root: Path, consumer: str) -> list[dict[str, object]]:
    """The rows the consumer's SQLite sink holds, by id, amounts as numbers."""
    with sqlite3.connect(root / "out" / f"{consumer}.db") as db:
        cursor = db.execute("select * from orders order by id")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    db.close()
    return [{**row, "amount": float(row["amount"])} for row in rows]
