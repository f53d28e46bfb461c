"""How far each notify target has got through the event outbox (``notify_progress``).

Storage only: ``dataferry.events.notifier`` decides what to send and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import NotifyProgressRow


@dataclass(frozen=True)
class Progress:
    """A target's place in the outbox (every event up to ``position`` is handled), what
    it has been sent, and while it fails: how often in a row, when to try again, why."""

    target: str
    position: int
    sent: int = 0
    failures: int = 0
    retry_at: datetime | None = None
    last_error: str | None = None


class NotifyProgress:
    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def get(self, target: str) -> Progress | None:
        with self.db.reads.begin() as session:
            row = session.get(NotifyProgressRow, target)
            return None if row is None else _progress(row)

    def all(self) -> list[Progress]:
        with self.db.reads.begin() as session:
            rows = session.scalars(select(NotifyProgressRow).order_by(NotifyProgressRow.target))
            return [_progress(row) for row in rows]

    def save(self, progress: Progress) -> None:
        with self.db.sessions.begin() as session:
            row = session.get(NotifyProgressRow, progress.target)
            if row is None:
                row = NotifyProgressRow(target=progress.target)
                session.add(row)
            row.position, row.sent, row.failures = (progress.position, progress.sent,
                                                    progress.failures)
            row.retry_at, row.last_error = progress.retry_at, progress.last_error
            row.updated_at = self.now()


def _progress(row: NotifyProgressRow) -> Progress:
    return Progress(row.target, row.position, row.sent, row.failures, row.retry_at,
                    row.last_error)
