"""Job leases: at most one scheduler or worker runs a job at a time.

Several processes (on one machine with SQLite, on many with a shared PostgreSQL) may
decide at the same moment that a job is due. Each calls ``acquire``; exactly one gets
the lease, until it expires or is released. A holder that dies simply stops renewing,
and the job becomes free again when its lease runs out.

``acquire`` is a single ``INSERT ... ON CONFLICT (job_id) DO UPDATE ... WHERE`` statement
that changes the row only if the lease is free (expired) or already ours, and returns
the row only if it did. Both SQLite and PostgreSQL execute it atomically against
concurrent callers, so no read-then-write race exists to lose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import sqlite

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import LeaseRow


@dataclass(frozen=True)
class Lease:
    """Who holds a job's lease, for which run, until when (aware UTC)."""

    job_id: str
    holder: str
    run_id: int | None
    expires_at: datetime


class Leases:
    """Acquire, renew and release job leases; ``now`` is the clock (tests pass a fake one).

    A holder is any stable name of the process or worker (``worker_name()``). The clocks
    of processes sharing a database must agree to well within a lease's length.
    """

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def acquire(self, job_id: str, holder: str, seconds: float, run_id: int | None = None) -> bool:
        """Take the job's lease for ``seconds``; False if someone else holds it unexpired.

        Acquiring a lease one already holds extends it (and updates ``run_id``).
        """
        now = self.now()
        lease = {"holder": holder, "run_id": run_id,
                 "expires_at": now + timedelta(seconds=seconds)}
        # The same upsert in both dialects; SQLAlchemy builds it per dialect.
        insert: Callable[..., Any] = sqlite.insert
        if self.db.dialect == "postgresql":
            # Here, not at the top: the package loads every PostgreSQL driver's dialect
            # (0.1 s), which a run with a SQLite metadata database does not need.
            from sqlalchemy.dialects import postgresql

            insert = postgresql.insert
        statement = insert(LeaseRow).values(job_id=job_id, **lease).on_conflict_do_update(
            index_elements=[LeaseRow.job_id],
            set_=lease,
            where=or_(LeaseRow.expires_at <= now, LeaseRow.holder == holder),
        )
        with self.db.sessions.begin() as session:
            won = session.execute(statement.returning(LeaseRow.holder)).first()
            return won is not None and won[0] == holder

    def renew(self, job_id: str, holder: str, seconds: float) -> bool:
        """Extend a lease we hold by ``seconds`` from now; False if it is no longer ours.

        A lease that expired but that nobody else took is still ours to renew.
        """
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(LeaseRow)
                .where(LeaseRow.job_id == job_id, LeaseRow.holder == holder)
                .values(expires_at=self.now() + timedelta(seconds=seconds))
            )
            return done.rowcount == 1

    def release(self, job_id: str, holder: str) -> bool:
        """Give the lease up so the job can run again at once; False if it was not ours."""
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                delete(LeaseRow)
                .where(LeaseRow.job_id == job_id, LeaseRow.holder == holder)
            )
            return done.rowcount == 1

    def current(self, job_id: str) -> Lease | None:
        """The unexpired lease on a job, or None if anyone may take it."""
        with self.db.reads.begin() as session:
            row = session.scalars(
                select(LeaseRow).where(LeaseRow.job_id == job_id,
                                       LeaseRow.expires_at > self.now())
            ).first()
            return None if row is None else Lease(row.job_id, row.holder, row.run_id,
                                                  row.expires_at)
