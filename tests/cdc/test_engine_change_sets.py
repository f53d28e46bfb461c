"""The engine's side of the change-set contract, with a log kept in memory by the test.

The log source here is the smallest real implementation of ``ChangeSource`` (the
PostgreSQL one is tested against a server in ``test_postgres_cdc``): it proves the
order the contract promises: publish, sign, then acknowledge; nothing changed, still
acknowledge; a failed publish, never acknowledge.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dataferry.connectors.base import ReadRequest, ReadResult, SourceColumn, SourceConnector
from dataferry.connectors.changes import ChangeSet, DeadLetter
from dataferry.engine.changes import DEAD_LETTERS, publish_changes
from dataferry.engine.context import RunContext
from dataferry.model.spec import SourceDataset
from dataferry.store.conform import SchemaError
from tests.store.conftest import StoreFixture, orders
from tests.store.test_merge_on_read import store_rows


class ListLog(SourceConnector):
    """A change log in a list: (position, upserted rows, deleted ids) per entry."""

    kind = "list"

    def __init__(self, table: pa.Table) -> None:
        self.table = table  # the "source table" a snapshot reads
        self.log: list[tuple[int, pa.Table, list[int]]] = []
        self.acknowledged: list[int] = []
        self.states: list[dict[str, Any] | None] = []
        self.dead: list[DeadLetter] = []

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        return []

    def read(self, request: ReadRequest) -> ReadResult:
        raise AssertionError("a change source is read through read_changes")

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        self.states.append(request.state)
        top = self.log[-1][0] if self.log else 0
        if request.state is None:
            return ChangeSet(self.table.to_reader(), None, {"n": top},
                             lambda: self.acknowledged.append(top))
        since = int(request.state["n"])
        entries = [e for e in self.log if e[0] > since]
        upserts = pa.concat_tables([orders([])] + [e[1] for e in entries],
                                   promote_options="default")
        deleted = [k for e in entries for k in e[2]]
        return ChangeSet(upserts.to_reader(),
                         pa.table({"id": pa.array(deleted, pa.int64())}).to_reader()
                         if deleted else None,
                         {"n": top}, lambda: self.acknowledged.append(top),
                         dead_letters=list(self.dead))


def context(shop: StoreFixture) -> RunContext:
    return RunContext(shop.root, shop.index.ecosystem, shop.index, shop.store)


def run(shop: StoreFixture, log: ListLog, full: bool = False) -> tuple[int, Any, list[str]]:
    warnings: list[str] = []
    rows, published = publish_changes(context(shop), "shop.orders", log,
                                      shop.spec("shop.orders"),  # type: ignore[arg-type]
                                      full=full, warnings=warnings, on_rows=None)
    return rows, published, warnings


def test_snapshot_then_changes_then_nothing(shop: StoreFixture) -> None:
    log = ListLog(orders(range(5)))
    rows, published, _ = run(shop, log)
    assert (rows, published.version, log.acknowledged) == (5, 1, [0])
    log.log.append((1, orders([1, 9], amount="2.00"), [3]))
    log.log.append((2, orders([]), [4]))
    rows, published, _ = run(shop, log)
    assert log.states[-1] == {"n": 0} and (rows, published.version) == (4, 2)
    assert store_rows(shop) == {0: Decimal("1.50"), 1: Decimal("2.00"), 2: Decimal("1.50"),
                                9: Decimal("2.00")}
    head = shop.dataset("shop.orders").head()
    assert head is not None and head.manifest.cursor == {"n": 2}  # signed with the version
    assert log.acknowledged == [0, 2]
    rows, published, _ = run(shop, log)  # nothing new: no version, still acknowledged
    assert (rows, published, log.acknowledged) == (0, None, [0, 2, 2])


def test_a_failed_publish_acknowledges_nothing(shop: StoreFixture) -> None:
    log = ListLog(orders(range(3)))
    run(shop, log)
    bad = orders([7]).set_column(0, "id", pa.array([None], pa.int64()))
    log.log.append((1, bad, []))
    with pytest.raises(SchemaError):
        run(shop, log)
    assert log.acknowledged == [0]
    head = shop.dataset("shop.orders").head()
    assert head is not None and head.manifest.cursor == {"n": 0}


def test_full_takes_a_snapshot_and_deletes_what_the_table_lacks(shop: StoreFixture) -> None:
    log = ListLog(orders(range(5)))
    run(shop, log)
    log.table = orders([0, 1, 2, 4])
    _, published, _ = run(shop, log, full=True)
    assert log.states[-1] is None and published.version == 2
    assert sorted(store_rows(shop)) == [0, 1, 2, 4]


def test_dead_letters_are_kept_next_to_the_version_and_counted(shop: StoreFixture) -> None:
    log = ListLog(orders(range(2)))
    run(shop, log)
    log.log.append((1, orders([5]), []))
    log.dead = [DeadLetter(b'{"id": "x"}', "column id: 'x' is not an int64", {"seq": 4}),
                DeadLetter(b"\xff\x00", "not JSON", {"seq": 5})]
    _, published, warnings = run(shop, log)
    files = list((shop.dataset("shop.orders").path / DEAD_LETTERS).glob("*.jsonl"))
    assert len(files) == 1 and files[0].name.startswith(f"{published.version:08d}-")
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert lines[0] == {"reason": "column id: 'x' is not an int64", "origin": {"seq": 4},
                        "payload": '{"id": "x"}'}
    assert lines[1]["payload_base64"] == "/wA="
    assert any("2 message(s) did not fit" in w for w in warnings)


def test_gc_keeps_dead_letters(shop: StoreFixture, tmp_path: Path) -> None:
    from dataferry.store.gc import collect

    log = ListLog(orders(range(2)))
    run(shop, log)
    log.log.append((1, orders([5]), []))
    log.dead = [DeadLetter(b"x", "not JSON")]
    run(shop, log)
    collect(shop.dataset("shop.orders"), shop.store.keys, keep=1)
    assert list((shop.dataset("shop.orders").path / DEAD_LETTERS).glob("*.jsonl"))
