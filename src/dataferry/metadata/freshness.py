"""Which deliveries hold data older than their consumer asked for (``freshness``).

The scheduler marks a delivery stale when its data's age passes the need's freshness
(the upstream ingest failed, or could not keep up) and clears the mark once fresh data
arrives; the server and ``ferry up`` show the marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.outbox import DATASET_STALE, add_event
from dataferry.metadata.schema import StaleRow


@dataclass(frozen=True)
class Stale:
    job_id: str
    since: datetime
    data_as_of: datetime | None
    reason: str


class Staleness:
    """Marks and clears stale deliveries; ``now`` is the clock."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def mark(self, job_id: str, data_as_of: datetime | None, reason: str,
             dataset: str | None = None, consumer: str | None = None) -> bool:
        """Mark ``job_id`` stale (keeping when it first became so); True if it is new.

        A new mark puts an ``io.dataferry.dataset.stale`` event in the outbox, in the
        same transaction (source ``/datasets/<dataset>``).
        """
        with self.db.sessions.begin() as session:
            row = session.get(StaleRow, job_id)
            if row is not None:
                row.data_as_of, row.reason = data_as_of, reason
                return False
            now = self.now()
            session.add(StaleRow(job_id=job_id, since=now, data_as_of=data_as_of,
                                 reason=reason))
            add_event(session, f"stale-{job_id}-{now.isoformat()}", DATASET_STALE,
                      f"/datasets/{dataset}" if dataset else f"/jobs/{job_id}", job_id, now,
                      {"job": job_id, "ref": dataset, "consumer": consumer,
                       "data_as_of": data_as_of.isoformat() if data_as_of else None,
                       "reason": reason})
            return True

    def clear(self, job_id: str) -> bool:
        """Fresh again; True if it was marked."""
        with self.db.sessions.begin() as session:
            result = session.execute(delete(StaleRow).where(StaleRow.job_id == job_id))
            return bool(getattr(result, "rowcount", 0))

    def stale(self) -> list[Stale]:
        with self.db.reads.begin() as session:
            rows = session.scalars(select(StaleRow).order_by(StaleRow.job_id)).all()
            return [Stale(r.job_id, r.since, r.data_as_of, r.reason) for r in rows]
