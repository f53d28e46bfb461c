"""The event outbox: the CloudEvents of what happened, as the metadata DB keeps them.

Each event is written in the transaction of the change it announces — a run finishing
(``RunHistory.finish_run``, ``mark_abandoned``: ``runs.add_run_events``) with the versions it published, a
delivery going stale (``Staleness.mark``) — so an event exists exactly when its change
does, whichever process made it. Readers follow ``seq``: the ``/api/v1/events`` stream
now, the dispatcher to webhooks and NATS later. ``EventCursor`` is how: it also picks up
an event whose transaction committed after a later one's (PostgreSQL hands out ``seq``
at insert, not at commit), so none is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataferry.metadata.database import Metadata
from dataferry.metadata.dbapi import Transaction

RUN_SUCCEEDED = "io.dataferry.run.succeeded"
RUN_FAILED = "io.dataferry.run.failed"
VERSION_PUBLISHED = "io.dataferry.dataset.version.published"
DATASET_STALE = "io.dataferry.dataset.stale"
MAX_GAP = 1_000


@dataclass(frozen=True)
class Event:
    """One CloudEvent of the outbox (``seq``: its place in the outbox)."""

    seq: int
    id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class PublishedVersion:
    """A version a run published, as its ``version.published`` event tells it."""

    ref: str
    version: int
    rows: int
    manifest_hash: str
    created_at: datetime
    added: int = 0
    """Rows the version added (new and changed ones, by primary key when it has one)."""
    removed: int = 0
    """Rows it removed (changed and deleted ones): changed rows count in both."""


def add_event(sql: Transaction, event_id: str, type_: str, source: str, subject: str | None,
              at: datetime, data: dict[str, Any]) -> None:
    """Put an event in the outbox, in the caller's transaction."""
    sql.execute('INSERT INTO events (event_id, "type", "source", subject, "time", data) '
                "VALUES (:event_id, :type, :source, :subject, :at, :data)",
                event_id=event_id, type=type_, source=source, subject=subject,
                at=sql.time(at), data=sql.json(data))


class Outbox:
    """Reads the outbox."""

    def __init__(self, db: Metadata) -> None:
        self.db = db

    def after(self, seq: int, limit: int = 500) -> list[Event]:
        """Events after ``seq``, oldest first."""
        return self._events("seq > :seq ORDER BY seq LIMIT :limit", seq=seq, limit=limit)

    def get(self, seqs: Collection[int]) -> list[Event]:
        """The events with these ``seq`` that exist (committed) now, oldest first."""
        if not seqs:
            return []
        named = {f"s{n}": seq for n, seq in enumerate(sorted(seqs))}
        return self._events(f"seq IN ({', '.join(':' + k for k in named)}) ORDER BY seq",
                            **named)

    def last_seq(self) -> int:
        """The newest event's ``seq`` (0: none yet)."""
        with self.db.sql.transaction(read_only=True) as sql:
            return int(sql.execute("SELECT max(seq) FROM events").fetchone()[0] or 0)

    def _events(self, condition: str, **params: Any) -> list[Event]:
        with self.db.sql.transaction(read_only=True) as sql:
            rows = sql.execute('SELECT seq, event_id, "type", "source", subject, "time", data '
                               f"FROM events WHERE {condition}", **params).fetchall()
            return [_event(sql, row) for row in rows]


class EventCursor:
    """Follows the outbox from a position, missing nothing.

    A ``seq`` below the newest one seen that has not shown up is a gap: a transaction
    that took its number and has not committed yet (or rolled back). ``poll`` asks for
    gaps again until they arrive or are ``patience`` seconds old; a transaction that
    writes an event is short, so a gap that old is a rollback.
    """

    def __init__(self, outbox: Outbox, position: int, patience: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        self.position = position
        self.patience = patience
        self.clock = clock
        self._gaps: dict[int, float] = {}  # seq -> when first missed

    def poll(self) -> list[Event]:
        """The events that arrived since the last poll (late ones first)."""
        now = self.clock()
        late = self.outbox.get(self._gaps)
        for event in late:
            del self._gaps[event.seq]
        self._gaps = {seq: since for seq, since in self._gaps.items()
                      if now - since < self.patience}
        fresh = self.outbox.after(self.position)
        expected = self.position + 1
        for event in fresh:
            # A jump of thousands is sequence numbers thrown away, not commits to wait for.
            for missing in range(expected, min(event.seq, expected + MAX_GAP)):
                self._gaps[missing] = now
            expected = event.seq + 1
        if fresh:
            self.position = fresh[-1].seq
        return late + fresh


def _event(sql: Transaction, row: Any) -> Event:
    seq, event_id, type_, source, subject, at, data = row
    return Event(int(seq), event_id, type_, source, subject, sql.read_stamp(at),
                 dict(sql.read_json(data)))
