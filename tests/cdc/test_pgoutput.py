"""The pgoutput decoder: every message round-trips through ``encode`` and ``decode``, and
bytes that are not a message fail with ``ProtocolError`` (never another exception)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.connectors.postgres import cdc_protocol as wire

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
names = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]),
                max_size=20)
values = st.one_of(st.none(), st.just(wire.UNCHANGED), st.binary(max_size=30))
tuples = st.lists(values, max_size=6).map(tuple)
columns = st.builds(wire.RelationColumn, st.integers(0, 1), names, u32, i32)

messages = st.one_of(
    st.builds(wire.Begin, u64, i64, u32),
    st.builds(wire.Commit, st.integers(0, 127), u64, u64, i64),
    st.builds(wire.Origin, u64, names),
    st.builds(wire.Relation, u32, names, names, st.sampled_from("dnfi"),
              st.lists(columns, max_size=5).map(tuple)),
    st.builds(wire.TypeMessage, u32, names, names),
    st.builds(wire.Insert, u32, tuples),
    st.builds(wire.Update, u32, st.none(), st.none(), tuples),
    tuples.flatmap(lambda old: st.builds(wire.Update, u32, st.just(old),
                                         st.sampled_from("KO"), tuples)),
    st.builds(wire.Delete, u32, tuples, st.sampled_from("KO")),
    st.builds(wire.Truncate, st.integers(0, 3), st.lists(u32, max_size=4).map(tuple)),
    st.builds(wire.StreamStart, u32, st.integers(0, 1)),
    st.just(wire.StreamStop()),
    st.builds(wire.StreamCommit, u32, st.integers(0, 127), u64, u64, i64),
    st.builds(wire.StreamAbort, u32, u32),
)


@given(messages)
def test_every_message_round_trips(message: wire.Message) -> None:
    assert wire.decode(wire.encode(message)) == message


@given(st.binary(max_size=40))
def test_garbage_is_a_protocol_error_or_a_message(data: bytes) -> None:
    with contextlib.suppress(wire.ProtocolError):
        wire.decode(data)


@given(messages, st.data())
def test_a_truncated_message_is_a_protocol_error(message: wire.Message,
                                                 data: st.DataObject) -> None:
    raw = wire.encode(message)
    cut = data.draw(st.integers(1, len(raw) - 1)) if len(raw) > 1 else None
    if cut is None:
        return
    try:
        decoded = wire.decode(raw[:cut])
    except wire.ProtocolError:
        return
    assert decoded != message  # a shorter prefix may parse, but never as the message


def test_a_known_insert_as_the_server_sends_it() -> None:
    raw = (b"I" + (16385).to_bytes(4, "big") + b"N" + (3).to_bytes(2, "big")
           + b"t" + (1).to_bytes(4, "big") + b"7" + b"n" + b"u")
    assert wire.decode(raw) == wire.Insert(16385, (b"7", None, wire.UNCHANGED))


@given(st.integers(0, 2**64 - 1))
def test_lsn_text_round_trips(value: int) -> None:
    assert wire.parse_lsn(wire.format_lsn(value)) == value


def test_lsn_text_as_postgresql_prints_it() -> None:
    assert wire.parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert wire.format_lsn(0x16_B374D848) == "16/B374D848"
    with pytest.raises(ValueError, match="not an LSN"):
        wire.parse_lsn("12345")


@given(messages)
def test_the_row_fast_path_agrees_with_decode(message: wire.Message) -> None:
    change = wire.row_change(wire.encode(message))
    match message:
        case wire.Insert(relation_id, new):
            assert change == ("I", relation_id, None, None, new)
        case wire.Update(relation_id, old, old_kind, new):
            assert change == ("U", relation_id, old, old_kind if old is not None else None,
                              new)
        case wire.Delete(relation_id, old, old_kind):
            assert change == ("D", relation_id, old, old_kind, None)
        case _:
            assert change is None


@given(st.tuples(st.sampled_from([b"U", b"I", b"D"]), st.binary(max_size=40)).map(b"".join))
def test_the_row_fast_path_fails_only_with_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(wire.ProtocolError):
        wire.row_change(data)


simple_cases = st.integers(0, 5).flatmap(lambda count: st.tuples(
    st.just(count),
    st.lists(st.builds(wire.Insert, u32, st.lists(values, min_size=count, max_size=count)
                       .map(tuple)) | st.builds(wire.Update, u32, st.none(), st.none(),
                                                st.lists(values, min_size=count,
                                                         max_size=count).map(tuple))
             | st.builds(wire.Delete, u32, st.lists(values, min_size=count, max_size=count)
                         .map(tuple), st.sampled_from("KO")),
             min_size=1, max_size=8),
    st.lists(st.integers(0, max(count - 1, 0)), max_size=count, unique=True)
    if count else st.just([])))
"""(column count, row messages of that many columns, the positions wanted)."""


@given(simple_cases)
def test_simple_rows_decode_as_row_change_does(case: tuple[int, list[wire.Message], list[int]]
                                               ) -> None:
    count, messages, wanted = case
    payloads = [wire.encode(m) for m in messages]
    arrays, unchanged = wire.simple_rows(payloads, count, wanted)
    for index, position in enumerate(wanted):
        expected = []
        for payload in payloads:
            change = wire.row_change(payload)
            assert change is not None
            row = change[4] if change[4] is not None else change[2]  # a delete: its old
            assert row is not None
            expected.append(row[position])
        assert arrays[index].to_pylist() == [
            None if v is wire.UNCHANGED else v for v in expected]
        assert unchanged[index] == any(v is wire.UNCHANGED for v in expected)


@given(st.lists(st.builds(wire.Insert, u32, tuples), min_size=1, max_size=4), st.data())
def test_simple_rows_fail_only_with_protocol_errors(messages: list[wire.Message],
                                                    data: st.DataObject) -> None:
    payloads = [wire.encode(m) for m in messages]
    cut = data.draw(st.integers(0, len(payloads) - 1))
    payloads[cut] = payloads[cut][:data.draw(st.integers(0, len(payloads[cut])))]
    count = data.draw(st.integers(0, 6))
    with contextlib.suppress(wire.ProtocolError):
        wire.simple_rows(payloads, count, list(range(count)))


@given(messages, u32)
def test_a_message_inside_a_streamed_chunk_reads_as_outside_without_its_xid(
        message: wire.Message, xid: int) -> None:
    raw = wire.encode(message)
    if raw[0] not in wire.IN_CHUNK:
        return
    assert wire.strip_xid(wire.with_xid(xid, raw)) == (xid, raw)


@given(simple_cases, st.data())
def test_simple_rows_of_a_streamed_chunk_decode_as_outside_it(
        case: tuple[int, list[wire.Message], list[int]], data: st.DataObject) -> None:
    count, messages, wanted = case
    payloads = [wire.encode(m) for m in messages]
    xids = data.draw(st.lists(u32, min_size=len(payloads), max_size=len(payloads)))
    chunk = [wire.with_xid(xid, p) for xid, p in zip(xids, payloads, strict=True)]
    outside = wire.simple_rows(payloads, count, wanted)
    inside = wire.simple_rows(chunk, count, wanted, header=10)
    assert [a.to_pylist() for a in inside[0]] == [a.to_pylist() for a in outside[0]]
    assert inside[1] == outside[1]
    assert wire.chunk_xids(chunk) == xids
