"""PostgreSQL's logical replication protocol (``pgoutput``, protocol versions 1 and 2): the
messages a slot's changes are made of, decoded from their bytes.

Version 2 (PostgreSQL 14 and later, with ``streaming 'on'``) adds the messages of a large
transaction streamed while it is still in progress: ``Stream Start`` and ``Stream Stop``
around each chunk of its changes, then ``Stream Commit`` or ``Stream Abort`` (of the
transaction, or of one of its subtransactions). Inside a chunk, every message carries the
xid of the (sub)transaction that made it after its tag (``strip_xid`` takes it off, so
the rest reads as outside a chunk).

As the PostgreSQL documentation ("Logical Replication Message Formats") lays them out:
every message starts with a one-byte tag; integers are big endian; strings end with a
NUL byte; a tuple is a column count and, per column, ``n`` (null), ``u`` (an unchanged
TOASTed value, not sent) or ``t`` and a length-prefixed value in the type's text form.
``encode`` writes the same bytes back (the tests round-trip every message through both).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

NULL = None


class Unchanged:
    """A TOASTed value an UPDATE did not change: the server does not send it. One
    instance, ``UNCHANGED``: it compares by identity (``UNCHANGED in values`` stays in C)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()
Value = bytes | Unchanged | None
"""One column of a tuple: its text form, ``UNCHANGED`` or None (SQL NULL)."""
Tuple = tuple[Value, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    """The LSN of the transaction's commit record."""
    commit_time: int
    """Microseconds since 2000-01-01 UTC."""
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: int


@dataclass(frozen=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True)
class RelationColumn:
    flags: int
    """1: part of the replica identity (the key)."""
    name: str
    type_oid: int
    typmod: int


@dataclass(frozen=True)
class Relation:
    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    """d default (the primary key), n nothing, f full, i an index."""
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class TypeMessage:
    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relation_id: int
    new: Tuple


@dataclass(frozen=True)
class Update:
    relation_id: int
    old: Tuple | None
    """The old key (``old_kind`` K: other columns None) or whole old row (O, replica
    identity full); None when the key did not change."""
    old_kind: str | None
    new: Tuple


@dataclass(frozen=True)
class Delete:
    relation_id: int
    old: Tuple
    old_kind: str


@dataclass(frozen=True)
class Truncate:
    options: int
    relation_ids: tuple[int, ...]


@dataclass(frozen=True)
class StreamStart:
    xid: int
    """The top-level transaction the chunk's changes belong to."""
    first: int
    """1 for its first chunk."""


@dataclass(frozen=True)
class StreamStop:
    pass


@dataclass(frozen=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: int


@dataclass(frozen=True)
class StreamAbort:
    xid: int
    """The top-level transaction."""
    subxid: int
    """The (sub)transaction aborted: ``xid`` itself when the whole transaction is."""


Message = (Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete
           | Truncate | StreamStart | StreamStop | StreamCommit | StreamAbort)

IN_CHUNK = frozenset(b"IUDRYTM")
"""The tags of the messages that carry their xid inside a streamed chunk."""


class ProtocolError(ValueError):
    """Bytes that are not a pgoutput message this decoder knows."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ProtocolError(f"message ends after {len(self.data)} bytes, "
                                f"{self.at + size} expected")
        out = self.data[self.at:self.at + size]
        self.at += size
        return out

    def int(self, fmt: str) -> int:
        return int(struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0])

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise ProtocolError("a string lacks its terminating NUL")
        try:
            out = self.data[self.at:end].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("a name is not UTF-8") from None
        self.at = end + 1
        return out

    def tuple(self) -> Tuple:
        values, self.at = tuple_at(self.data, self.at)
        return values



_COUNT = struct.Struct(">h")
_SIZE = struct.Struct(">i")
_RELATION = struct.Struct(">I")


def tuple_at(data: bytes, at: int) -> tuple[Tuple, int]:
    """The TupleData at ``at`` and the offset after it (the hot path: every changed row;
    plain indexing, no helpers)."""
    end = len(data)
    values: list[Value] = []
    append = values.append
    try:
        (count,) = _COUNT.unpack_from(data, at)
        at += 2
        for _ in range(count):
            kind = data[at]
            if kind == 0x74 or kind == 0x62:  # t (text), b (binary)
                (size,) = _SIZE.unpack_from(data, at + 1)
                at += 5
                stop = at + size
                if size < 0 or stop > end:
                    raise ProtocolError(f"a value of {size} bytes passes the message end")
                append(data[at:stop])
                at = stop
            elif kind == 0x6E:  # n
                append(None)
                at += 1
            elif kind == 0x75:  # u
                append(UNCHANGED)
                at += 1
            else:
                raise ProtocolError(f"unknown tuple column kind {bytes([kind])!r}")
    except (struct.error, IndexError):
        raise ProtocolError(f"message ends after {end} bytes, inside a tuple") from None
    return tuple(values), at


def decode(data: bytes) -> Message | None:
    """One message (None: a kind this reader ignores, e.g. a logical message)."""
    reader = _Reader(bytes(data))
    tag = reader.take(1)
    match tag:
        case b"B":
            return Begin(reader.int(">Q"), reader.int(">q"), reader.int(">I"))
        case b"C":
            return Commit(reader.int(">b"), reader.int(">Q"), reader.int(">Q"),
                          reader.int(">q"))
        case b"O":
            return Origin(reader.int(">Q"), reader.string())
        case b"R":
            relation_id, namespace, name = reader.int(">I"), reader.string(), reader.string()
            identity = chr(reader.int(">B"))
            columns = tuple(RelationColumn(reader.int(">b"), reader.string(), reader.int(">I"),
                                           reader.int(">i"))
                            for _ in range(reader.int(">h")))
            return Relation(relation_id, namespace, name, identity, columns)
        case b"Y":
            return TypeMessage(reader.int(">I"), reader.string(), reader.string())
        case b"I":
            relation_id = reader.int(">I")
            _expect(reader, b"N")
            return Insert(relation_id, reader.tuple())
        case b"U":
            relation_id = reader.int(">I")
            kind = reader.take(1)
            old: Tuple | None = None
            old_kind = None
            if kind in (b"K", b"O"):
                old, old_kind = reader.tuple(), kind.decode()
                kind = reader.take(1)
            if kind != b"N":
                raise ProtocolError(f"update: expected N, got {kind!r}")
            return Update(relation_id, old, old_kind, reader.tuple())
        case b"D":
            relation_id = reader.int(">I")
            kind = reader.take(1)
            if kind not in (b"K", b"O"):
                raise ProtocolError(f"delete: expected K or O, got {kind!r}")
            return Delete(relation_id, reader.tuple(), kind.decode())
        case b"T":
            count, options = reader.int(">I"), reader.int(">b")
            return Truncate(options, tuple(reader.int(">I") for _ in range(count)))
        case b"M":
            return None
        case b"S":
            return StreamStart(reader.int(">I"), reader.int(">B"))
        case b"E":
            return StreamStop()
        case b"c":
            return StreamCommit(reader.int(">I"), reader.int(">b"), reader.int(">Q"),
                                reader.int(">Q"), reader.int(">q"))
        case b"A":
            return StreamAbort(reader.int(">I"), reader.int(">I"))
    raise ProtocolError(f"unknown pgoutput message {tag!r}")


def strip_xid(data: bytes) -> tuple[int, bytes]:
    """A message inside a streamed chunk (its tag in ``IN_CHUNK``): the xid of the
    (sub)transaction that made it, and the message without it."""
    if len(data) < 5:
        raise ProtocolError(f"message ends after {len(data)} bytes, 5 expected")
    return int.from_bytes(data[1:5], "big"), data[:1] + data[5:]


def with_xid(xid: int, data: bytes) -> bytes:
    """``data`` as a streamed chunk carries it (``strip_xid``'s inverse; for tests)."""
    return data[:1] + struct.pack(">I", xid) + data[1:]


RowChange = tuple[str, int, Tuple | None, str | None, Tuple | None]
"""(``I``/``U``/``D``, relation id, old tuple, old kind ``K``/``O``, new tuple)."""


def row_change(data: bytes) -> RowChange | None:
    """An Insert, Update or Delete as a plain tuple (None for other messages): the hot
    path of a change read, without building a message object. Same checks as ``decode``."""
    tag = data[0] if data else 0
    if tag != 0x55 and tag != 0x49 and tag != 0x44:  # U, I, D
        return None
    if len(data) < 6:
        raise ProtocolError(f"message ends after {len(data)} bytes, 6 expected")
    (relation_id,) = _RELATION.unpack_from(data, 1)
    kind = data[5]
    if tag == 0x49:
        if kind != 0x4E:
            raise ProtocolError(f"insert: expected N, got {bytes([kind])!r}")
        return "I", relation_id, None, None, tuple_at(data, 6)[0]
    if kind == 0x4E:
        if tag == 0x44:
            raise ProtocolError("delete: unexpected b'N'")
        return "U", relation_id, None, None, tuple_at(data, 6)[0]
    if kind != 0x4B and kind != 0x4F:
        raise ProtocolError(f"{'update' if tag == 0x55 else 'delete'}: unexpected "
                            f"{bytes([kind])!r}")
    old, at = tuple_at(data, 6)
    old_kind = "K" if kind == 0x4B else "O"
    if tag == 0x44:
        return "D", relation_id, old, old_kind, None
    if at >= len(data) or data[at] != 0x4E:
        raise ProtocolError(f"update: expected N, got {data[at:at + 1]!r}")
    return "U", relation_id, old, old_kind, tuple_at(data, at + 1)[0]


def _expect(reader: _Reader, tag: bytes) -> None:
    got = reader.take(1)
    if got != tag:
        raise ProtocolError(f"expected {tag!r}, got {got!r}")


def encode(message: Message) -> bytes:
    """The bytes of ``message`` as the server sends them (for tests and tools)."""
    match message:
        case Begin(final_lsn, commit_time, xid):
            return b"B" + struct.pack(">QqI", final_lsn, commit_time, xid)
        case Commit(flags, commit_lsn, end_lsn, commit_time):
            return b"C" + struct.pack(">bQQq", flags, commit_lsn, end_lsn, commit_time)
        case Origin(lsn, name):
            return b"O" + struct.pack(">Q", lsn) + _string(name)
        case Relation(relation_id, namespace, name, identity, columns):
            out = b"R" + struct.pack(">I", relation_id) + _string(namespace) + _string(name)
            out += struct.pack(">Bh", ord(identity), len(columns))
            for column in columns:
                out += struct.pack(">b", column.flags) + _string(column.name)
                out += struct.pack(">Ii", column.type_oid, column.typmod)
            return out
        case TypeMessage(type_oid, namespace, name):
            return b"Y" + struct.pack(">I", type_oid) + _string(namespace) + _string(name)
        case Insert(relation_id, new):
            return b"I" + struct.pack(">I", relation_id) + b"N" + _tuple(new)
        case Update(relation_id, old, old_kind, new):
            out = b"U" + struct.pack(">I", relation_id)
            if old is not None:
                out += (old_kind or "K").encode() + _tuple(old)
            return out + b"N" + _tuple(new)
        case Delete(relation_id, old, old_kind):
            return b"D" + struct.pack(">I", relation_id) + old_kind.encode() + _tuple(old)
        case Truncate(options, relation_ids):
            return b"T" + struct.pack(">Ib", len(relation_ids), options) + b"".join(
                struct.pack(">I", r) for r in relation_ids)
        case StreamStart(xid, first):
            return b"S" + struct.pack(">IB", xid, first)
        case StreamStop():
            return b"E"
        case StreamCommit(xid, flags, commit_lsn, end_lsn, commit_time):
            return b"c" + struct.pack(">IbQQq", xid, flags, commit_lsn, end_lsn, commit_time)
        case StreamAbort(xid, subxid):
            return b"A" + struct.pack(">II", xid, subxid)
    raise TypeError(f"not a pgoutput message: {message!r}")


def _string(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def _tuple(values: Tuple) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif isinstance(value, Unchanged):
            out += b"u"
        else:
            out += b"t" + struct.pack(">i", len(value)) + value
    return out


def parse_lsn(text: str) -> int:
    """``16/B374D848`` as a number."""
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not an LSN (write it as 16/B374D848)")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def simple_rows(payloads: list[bytes], count: int, wanted: list[int], header: int = 6
                ) -> tuple[list[pa.Array], list[bool]]:
    """Many Insert messages, Updates without an old tuple (``I``/``U``, ``N``) or Deletes
    (``D``, ``K``/``O``): a TupleData of ``count`` columns after the same six bytes,
    decoded at once with numpy: for each position in
    ``wanted``, its values as one binary array (NULL for ``n`` and ``u``) and whether a
    ``u`` (unchanged TOASTed value) was among them. Same checks as ``row_change``; the
    caller has checked each message's tag and relation. ``header``: 10 for messages of a
    streamed chunk (their xid after the tag, ``chunk_xids``)."""
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    ends = np.cumsum(lengths)
    pos = ends - lengths + header
    if (lengths < header + 2).any():
        raise ProtocolError("a row message ends before its column count")
    counts = (buf[pos].astype(np.int64) << 8) | buf[pos + 1]
    if (counts != count).any():
        raise ProtocolError(f"a row message has {int(counts[counts != count][0])} columns, "
                            f"its relation {count}")
    pos = pos + 2
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for column in range(count):
        if (pos >= ends).any():
            raise ProtocolError("a row message ends inside its tuple")
        kind = buf[pos]
        value = (kind == 0x62) | (kind == 0x74)  # b, t
        null = kind == 0x6E
        unchanged = kind == 0x75
        if not (value | null | unchanged).all():
            bad = int(kind[~(value | null | unchanged)][0])
            raise ProtocolError(f"unknown tuple column kind {bytes([bad])!r}")
        size = np.zeros(len(pos), dtype=np.int64)
        if value.any():
            at = pos[value]
            if (at + 5 > ends[value]).any():
                raise ProtocolError("a row message ends inside a value's length")
            raw = np.stack([buf[at + i] for i in range(1, 5)]).astype(np.int64)
            sizes = (raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]
            sizes = np.where(sizes >= 1 << 31, sizes - (1 << 32), sizes)
            if (sizes < 0).any() or (at + 5 + sizes > ends[value]).any():
                raise ProtocolError("a value passes the end of its message")
            size[value] = sizes
        if column in wanted:
            found[column] = (pos + 5, size, null | unchanged, unchanged)
        pos = np.where(value, pos + 5 + size, pos + 1)
    arrays, unchanged_any = [], []
    for column in wanted:
        starts, size, missing, unchanged = found[column]
        offsets = np.zeros(len(size) + 1, dtype=np.int64)
        np.cumsum(size, out=offsets[1:])
        total = int(offsets[-1])
        index = np.repeat(starts - offsets[:-1], size) + np.arange(total, dtype=np.int64)
        data = buf[index]
        validity = None if not missing.any() else \
            pa.array(~missing, pa.bool_()).buffers()[1]
        kind = pa.binary() if total < 1 << 31 else pa.large_binary()
        width = np.int32 if kind == pa.binary() else np.int64
        arrays.append(pa.Array.from_buffers(
            kind, len(size), [validity, pa.py_buffer(offsets.astype(width)),
                              pa.py_buffer(data)], null_count=int(missing.sum())))
        unchanged_any.append(bool(unchanged.any()))
    return arrays, unchanged_any


def chunk_xids(payloads: list[bytes]) -> list[int]:
    """The xid of each message of a streamed chunk (the four bytes after its tag), at
    once; the caller has checked each message's length."""
    heads = np.frombuffer(b"".join(p[1:5] for p in payloads), dtype=">u4")
    return [int(x) for x in heads.tolist()]
