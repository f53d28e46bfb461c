"""What a change read holds between the slot's messages and its result
(``connectors/postgres/cdc.py``): the changes decoded so far (``Staged``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass
class Staged:
    """Decoded changes on their way to the staging table (text values) or, with
    ``convert`` (binary values), to memory or a local Parquet file. Inserts and updates
    that kept their key (most changes) wait as raw messages and are decoded together
    (``wire.simple_rows``); the others are decoded one by one into ``rows``."""

    columns: list[str]  # the source columns staged (declared ones), in order
    convert: Callable[[int, pa.Array], pa.Array] | None = None
    """Binary values: (column index, its values as binary) -> the column as a table read
    gives it."""
    rows: list[list[bytes | None]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    xids: list[int] = field(default_factory=list)
    """Per change, the (sub)transaction of a streamed one that made it (0: not streamed)."""
    simple: list[bytes] = field(default_factory=list)
    """All of one streamed transaction's chunks (their xid after the tag) or of none."""
    simple_seqs: list[int] = field(default_factory=list)
    gone: list[bytes] = field(default_factory=list)  # deletes, likewise decoded together
    gone_seqs: list[int] = field(default_factory=list)
    chunks: list[tuple[list[pa.Array], list[int], list[int], str]] = field(
        default_factory=list)
    """Messages decoded together (with the relation layout of their time): their seqs,
    xids and op."""
    total: int = 0

    def add(self, seq: int, op: str, values: list[bytes | None], xid: int) -> None:
        self.seqs.append(seq)
        self.ops.append(op)
        self.rows.append(values)
        self.xids.append(xid)
        self.total += 1

    def clear(self, *, waiting: bool = False) -> None:
        """Forget the decoded changes not taken yet, and with ``waiting`` the messages
        waiting to be decoded (a streamed transaction's batch that could not be
        converted: kept aside as an error, see ``cdc._Changes._ingest``)."""
        self.rows, self.seqs, self.ops, self.xids, self.chunks = [], [], [], [], []
        if waiting:
            for waiting_list in (self.simple, self.simple_seqs, self.gone, self.gone_seqs):
                waiting_list.clear()

    def pending(self) -> int:
        return len(self.rows) + len(self.simple) + len(self.gone) + sum(
            len(c[1]) for c in self.chunks)

    def take(self) -> pa.Table:
        assert not self.simple and not self.gone, "decode the waiting messages first"
        columns: list[list[pa.Array]] = [
            [pa.array([row[i] for row in self.rows], pa.binary())]
            for i in range(len(self.columns))]
        seqs, xids, ops = [self.seqs], [self.xids], [pa.array(self.ops, pa.string())]
        for arrays, chunk_seqs, chunk_xids, op in self.chunks:
            for i, array in enumerate(arrays):
                columns[i].append(array)
            seqs.append(chunk_seqs)
            xids.append(chunk_xids)
            ops.append(pa.array([op] * len(chunk_seqs), pa.string()))
        convert = self.convert
        table: dict[str, pa.Array] = {}
        for i, parts in enumerate(columns):
            if any(part.type != pa.binary() for part in parts):
                parts = [part.cast(pa.large_binary()) for part in parts]
            values = pa.concat_arrays(parts)
            # text values: the server's UTF-8, checked by the cast
            table[f"c{i}"] = values.cast(pa.string()) if convert is None else \
                convert(i, values)
        table["_ferry_seq"] = pa.array([s for part in seqs for s in part], pa.int64())
        table["_ferry_op"] = pa.concat_arrays(ops)
        table["_ferry_xid"] = pa.array([x for part in xids for x in part], pa.int64())
        self.clear()
        return pa.table(table)
