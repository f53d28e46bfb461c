"""Which deliveries hold data older than their consumer asked for (``freshness``).

The scheduler marks a delivery stale when its data's age passes the need's freshness
(the upstream ingest failed, or could not keep up) and clears the mark once fresh data
arrives; the server and ``ferry up`` show the marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.outbox import DATASET_STALE, add_event


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
        with self.db.sql.transaction() as sql:
            if sql.execute("UPDATE stale SET data_as_of = :data_as_of, reason = :reason "
                           "WHERE job_id = :job_id", data_as_of=sql.time(data_as_of),
                           reason=reason, job_id=job_id).rowcount:
                return False
            now = self.now()
            sql.execute("INSERT INTO stale (job_id, since, data_as_of, reason) "
                        "VALUES (:job_id, :since, :data_as_of, :reason)", job_id=job_id,
                        since=sql.time(now), data_as_of=sql.time(data_as_of), reason=reason)
            add_event(sql, f"stale-{job_id}-{now.isoformat()}", DATASET_STALE,
                      f"/datasets/{dataset}" if dataset else f"/jobs/{job_id}", job_id, now,
                      {"job": job_id, "ref": dataset, "consumer": consumer,
                       "data_as_of": data_as_of.isoformat() if data_as_of else None,
                       "reason": reason})
            return True

    def clear(self, job_id: str) -> bool:
        """Fresh again; True if it was marked."""
        with self.db.sql.transaction() as sql:
            return bool(sql.execute("DELETE FROM stale WHERE job_id = :job_id",
                                    job_id=job_id).rowcount)

    def stale(self) -> list[Stale]:
        with self.db.sql.transaction(read_only=True) as sql:
            rows = sql.execute("SELECT job_id, since, data_as_of, reason FROM stale "
                               "ORDER BY job_id").fetchall()
            return [Stale(job_id, sql.read_stamp(since), sql.read_time(data_as_of), reason)
                    for job_id, since, data_as_of, reason in rows]
