"""MariaDB CDC without a server: the fold of row events (one change per key, whole
transactions only) against a plain model, and the binlog position's state round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataferry.connectors.mysql.cdc import BinlogPosition
from dataferry.connectors.mysql.cdc_fold import DELETE, UPSERT, ChangeFold
from dataferry.connectors.mysql.cdc_scans import IdleScans

_OPS = st.lists(st.one_of(
    st.tuples(st.just("upsert"), st.integers(0, 5), st.text(max_size=3)),
    st.tuples(st.just("delete"), st.integers(0, 5), st.just("")),
    st.tuples(st.just("commit"), st.just(0), st.just("")),
    st.tuples(st.just("rollback"), st.just(0), st.just("")),
    st.tuples(st.just("flush"), st.just(0), st.just("")),  # a big transaction spills
), max_size=40)


@given(_OPS)
def test_the_fold_keeps_each_keys_last_committed_change(ops: list[tuple[str, int, str]]) -> None:
    committed: dict[int, tuple[str, Any]] = {}
    pending: dict[int, tuple[str, Any]] = {}
    fold = ChangeFold()
    try:
        for op, key, value in ops:
            if op == "upsert":
                fold.upsert((key,), (key, value))
                pending[key] = ("upsert", (key, value))
            elif op == "delete":
                fold.delete((key,))
                pending[key] = ("delete", (key,))
            elif op == "flush":
                fold._flush()
            elif op == "commit":
                fold.commit()
                committed.update(pending)
                pending.clear()
            else:
                fold.rollback()
                pending.clear()
        fold.rollback()  # the read ended: what was not committed is not kept
        upserts = sorted(row for batch in fold.rows(UPSERT, 3) for row in batch)
        deletes = sorted(row for batch in fold.rows(DELETE, 3) for row in batch)
        assert upserts == sorted(v for o, v in committed.values() if o == "upsert")
        assert deletes == sorted(v for o, v in committed.values() if o == "delete")
        assert fold.count(UPSERT) == len(upserts)
    finally:
        fold.close()


@given(st.text(alphabet="abcdefghij.-_", min_size=1, max_size=12), st.integers(0, 99999),
       st.integers(4, 2**40), st.none() | st.text(alphabet="0123456789-", max_size=20))
def test_a_position_survives_the_manifest(stem: str, number: int, pos: int,
                                          gtid: str | None) -> None:
    position = BinlogPosition(f"{stem}.{number:06d}", pos, gtid)
    state = position.state(12, 0.5)
    assert BinlogPosition.of_state(state) == position
    later = BinlogPosition(f"{stem}.{number + 1:06d}", 4)
    assert later.order() > position.order()


def test_a_state_of_another_capture_is_no_position() -> None:
    assert BinlogPosition.of_state(None) is None
    assert BinlogPosition.of_state({"cursor": "2024-01-01"}) is None
    assert BinlogPosition.of_state({"binlog_file": "binlog.000001", "binlog_pos": "4"}) is None


def test_idle_scans_follow_only_notes_of_their_server_and_table(tmp_path: Path) -> None:
    scans = IdleScans("127.0.0.1:3306 1 db1", "shop.items", tmp_path)
    p1, p2, p3 = (BinlogPosition("binlog.000001", 100), BinlogPosition("binlog.000002", 50),
                  BinlogPosition("binlog.000003", 10, "0-1-9"))
    assert scans.skip(p1) == p1
    scans.note_empty(p1, p2)
    scans.note_empty(p2, p3)
    scans.note_empty(p3, p1)  # backwards: never noted
    assert scans.skip(p1) == p3 and scans.skip(p2) == p3 and scans.skip(p3) == p3
    assert IdleScans("127.0.0.1:3306 2 db1", "shop.items", tmp_path).skip(p1) == p1
    assert IdleScans("127.0.0.1:3306 1 db1", "shop.other", tmp_path).skip(p1) == p1
    for note in tmp_path.iterdir():
        note.write_text("{not json")
    assert scans.skip(p1) == p1  # an unreadable note: read from the position itself


def test_held_changes_count_only_once_published_in_their_order() -> None:
    fold = ChangeFold()
    try:
        fold.upsert((1,), (1, "plain"))
        fold.group = "0-1-5"  # an XA PREPARE's rows
        fold.upsert((1,), (1, "xa first"))
        fold.upsert((1,), (1, "xa last"))
        fold.delete((2,))
        fold.group = "0-1-6"
        fold.upsert((3,), (3, "rolled back"))
        fold.group = None
        fold.commit()
        assert [r for b in fold.rows(UPSERT, 10) for r in b] == [(1, "plain")]
        fold.upsert((4,), (4, "open"))
        fold.publish_held("0-1-5")
        fold.rollback()  # the read stopped inside that transaction: the commit undone
        assert [r for b in fold.rows(UPSERT, 10) for r in b] == [(1, "plain")]
        fold.publish_held("0-1-5")
        fold.drop_held("0-1-6")
        fold.commit()
        assert [r for b in fold.rows(UPSERT, 10) for r in b] == [(1, "xa last")]
        assert [r for b in fold.rows(DELETE, 10) for r in b] == [(2,)]
        fold.publish_held("0-1-6")  # dropped: nothing left to publish
        fold.commit()
        assert fold.count(UPSERT) == 1
    finally:
        fold.close()


def test_held_xa_transactions_round_trip_through_the_recorded_state() -> None:
    from dataferry.connectors.mysql.cdc_xa import PreparedXa

    held = (PreparedXa("X'7831',X'',1", "binlog.000003", 632, "0-1-3"),
            PreparedXa("X'7832',X'62',7", "binlog.000004", 4, None))
    position = BinlogPosition("binlog.000005", 1234, "0-1-9", held)
    state = position.state(0, 0.0)
    assert BinlogPosition.of_state(state) == position
    assert "xa_prepared" not in BinlogPosition("binlog.000005", 1234).state(None, None)
    assert BinlogPosition.of_state({**state, "xa_prepared": [{"xid": 1}, "junk"]}) == \
        BinlogPosition("binlog.000005", 1234, "0-1-9")
