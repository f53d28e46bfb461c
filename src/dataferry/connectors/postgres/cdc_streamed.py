"""Transactions streamed before their commit (pgoutput protocol version 2, ``streaming
'on'``): which of the changes read belong to one that committed in the run.

The walsender decodes a transaction as its WAL goes by; without streaming it sends
nothing of it before its commit, so the client waits while the server decodes a large
one. With streaming, once a transaction's decoded changes pass
``logical_decoding_work_mem`` the walsender sends them in chunks (``Stream Start`` ...
``Stream Stop``) while it goes on decoding, and the client decodes them meanwhile. The
changes of a chunk are staged like any other, tagged with the xid of the
(sub)transaction that made them, and count only if their transaction's ``Stream
Commit`` is read in the run: an aborted transaction (``Stream Abort`` of the top-level
xid), a rolled-back subtransaction (``Stream Abort`` of its subxid) and a transaction
still open when the read stops are dropped when the run's result is computed
(``dropped``). A transaction open across a run comes whole in a later one: the slot's
restart point stays before its start, and the walsender streams it again from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dataferry.errors import SourceError


@dataclass
class Streamed:
    """The streamed transactions of one read (xids as pgoutput sends them)."""

    top_of: dict[int, int] = field(default_factory=dict)
    """Each (sub)transaction whose changes were read -> its top-level transaction."""
    committed: set[int] = field(default_factory=set)
    aborted: set[int] = field(default_factory=set)
    """Subtransactions rolled back (their own changes dropped even if the top commits)."""
    truncates: list[tuple[int, int]] = field(default_factory=list)
    """(seq, xid) of each TRUNCATE of the table read (xid 0: not streamed)."""
    failed: dict[int, SourceError] = field(default_factory=dict)
    """A streamed transaction's changes that could not be converted: the error stops the
    run only if the transaction commits in it (an aborted one never appears)."""

    def commit(self, xid: int) -> None:
        if xid in self.failed:
            raise self.failed[xid]
        self.committed.add(xid)

    def abort(self, xid: int, subxid: int) -> None:
        if subxid == xid:  # the whole transaction: never committed, its error moot
            self.failed.pop(xid, None)
        else:
            self.aborted.add(subxid)

    def dropped(self) -> list[int]:
        """The (sub)transactions whose changes the run must not keep."""
        return sorted(sub for sub, top in self.top_of.items()
                      if top not in self.committed or sub in self.aborted)

    def truncated_at(self) -> int:
        """The seq of the last TRUNCATE that counts (-1: none)."""
        dropped = set(self.dropped())
        return max((seq for seq, xid in self.truncates if xid not in dropped), default=-1)
