"""The agent jobs of each private network: queued by the hub, leased by one agent.

A job is ``queued`` until an agent of its network claims it (``running``, with a lease
of ``lease_seconds`` that each contact about the job renews), then ``done`` or
``failed`` as the agent reports, or ``cancelled`` when the hub stops waiting for it. A
lease that runs out (the agent was killed, its network cut) or an agent revoked puts
the job back in the queue with the next ``attempt``: the next agent of the network to
poll gets it. Every call about a running job names its attempt, so an agent that comes
back late cannot report, upload to or renew a job given to another since. The hub
publishes only what the attempt that reported ``done`` uploaded, once. A job whose run on
the hub has ended (the ``ferry run`` waiting for it was killed, or declared abandoned by a
scheduler, which retries the job as a new run) is cancelled: not handed out while queued,
and, while an agent runs it, refused at the agent's next contact (renewal, upload or
report: 409, the agent drops it). Its uploads are deleted; nobody publishes them, and the
retry reads the source again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update

from dataferry.metadata import Metadata
from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.schema import AgentJobRow, RunRow

LEASE_SECONDS = 60.0
"""How long a claimed job stays an agent's without a word from it."""
AgentJobKind = Literal["ingest", "deliver", "transform", "check"]
ENDED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class AgentJob:
    """One job for the agents of a network, as the queue holds it."""

    id: int
    job_id: str
    network: str
    kind: str
    payload: dict[str, Any]
    state: str
    run_id: int | None
    agent_id: int | None
    attempt: int
    lease_expires_at: datetime | None
    created_at: datetime
    ended_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class AgentJobs:
    """The queue in the metadata DB; ``now`` is the clock (tests pass a fake one)."""

    def __init__(self, db: Metadata, now: Clock = utcnow,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.db = db
        self.now = now
        self.lease = timedelta(seconds=lease_seconds)

    def submit(self, job_id: str, network: str, kind: AgentJobKind, payload: dict[str, Any],
               run_id: int | None = None) -> AgentJob:
        row = AgentJobRow(job_id=job_id, network=network, kind=kind, payload=payload,
                          state="queued", run_id=run_id, attempt=0, created_at=self.now())
        with self.db.sessions.begin() as session:
            session.add(row)
            session.flush()
            return _job(row)

    def get(self, agent_job_id: int) -> AgentJob | None:
        with self.db.reads.begin() as session:
            row = session.get(AgentJobRow, agent_job_id)
            return None if row is None else _job(row)

    def requeue_expired(self, network: str | None = None) -> int:
        """Put the running jobs whose lease ran out back in the queue; returns how many."""
        query = update(AgentJobRow).where(AgentJobRow.state == "running",
                                          AgentJobRow.lease_expires_at <= self.now())
        if network is not None:
            query = query.where(AgentJobRow.network == network)
        with self.db.sessions.begin() as session:
            return int(session.connection().execute(query.values(state="queued", agent_id=None,
                                                    lease_expires_at=None)).rowcount)

    def claim(self, network: str, agent_id: int) -> AgentJob | None:
        """The oldest queued job of ``network``, now leased to ``agent_id``; None if none.

        The conditional update makes two agents polling at once never get the same job.
        """
        self.requeue_expired(network)
        while True:
            with self.db.reads.begin() as session:
                found = session.execute(
                    select(AgentJobRow.id, AgentJobRow.attempt, RunRow.status,
                           RunRow.lease_expires_at)
                    .outerjoin(RunRow, RunRow.id == AgentJobRow.run_id)
                    .where(AgentJobRow.network == network, AgentJobRow.state == "queued")
                    .order_by(AgentJobRow.id).limit(1)).first()
            if found is None:
                return None
            if found.status is not None and _run_gone(found.status, found.lease_expires_at,
                                                      self.now()):
                # nobody waits for it any more (the ferry run that queued it was killed):
                # running it would upload what no one publishes
                self.cancel(found.id, "its run on the hub ended before an agent took it")
                continue
            with self.db.sessions.begin() as session:
                won = session.connection().execute(
                    update(AgentJobRow).where(AgentJobRow.id == found.id,
                                              AgentJobRow.state == "queued")
                    .values(state="running", agent_id=agent_id, attempt=found.attempt + 1,
                            lease_expires_at=self.now() + self.lease)).rowcount
            if won:
                claimed = self.get(found.id)
                assert claimed is not None
                return claimed

    def holds(self, agent_job_id: int, agent_id: int, attempt: int) -> AgentJob | None:
        """The job if ``agent_id`` holds its lease for ``attempt`` (renewed); else None.
        A job whose run on the hub ended is cancelled here: its agent drops it."""
        if self._orphaned(agent_job_id):
            return None
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(AgentJobRow).where(AgentJobRow.id == agent_job_id,
                                          AgentJobRow.agent_id == agent_id,
                                          AgentJobRow.attempt == attempt,
                                          AgentJobRow.state == "running",
                                          AgentJobRow.lease_expires_at > self.now())
                .values(lease_expires_at=self.now() + self.lease)).rowcount
        return self.get(agent_job_id) if done else None

    def finish(self, agent_job_id: int, agent_id: int, attempt: int, *, ok: bool,
               result: dict[str, Any] | None = None, error: str | None = None) -> bool:
        """Record how the agent's attempt ended; False if it no longer holds the job (or
        its run on the hub ended: then nobody would publish it)."""
        if self._orphaned(agent_job_id):
            return False
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(AgentJobRow).where(AgentJobRow.id == agent_job_id,
                                          AgentJobRow.agent_id == agent_id,
                                          AgentJobRow.attempt == attempt,
                                          AgentJobRow.state == "running",
                                          AgentJobRow.lease_expires_at > self.now())
                .values(state="done" if ok else "failed", result=result,
                        error=None if error is None else error[:4000],
                        ended_at=self.now(), lease_expires_at=None)).rowcount
        return bool(done)

    def cancel(self, agent_job_id: int, why: str = "the hub stopped waiting for it") -> bool:
        """Stop offering a job nobody has finished (the hub stopped waiting for it)."""
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(AgentJobRow).where(AgentJobRow.id == agent_job_id,
                                          AgentJobRow.state.in_(("queued", "running")))
                .values(state="cancelled", ended_at=self.now(), lease_expires_at=None,
                        error=why)).rowcount
        return bool(done)

    def ended_at(self, agent_job_id: int) -> datetime | None:
        """When the job ended; None while it is queued or running; the earliest time for a
        job the queue does not have (``Uploads.sweep``)."""
        job = self.get(agent_job_id)
        if job is None:
            return datetime.min.replace(tzinfo=self.now().tzinfo)
        if job.state not in ENDED:
            return None
        return job.ended_at or job.created_at

    def _orphaned(self, agent_job_id: int) -> bool:
        """Cancel a running job whose run on the hub has ended (or whose run's lease ran
        out: the process waiting for it is gone); True when it is cancelled now."""
        with self.db.reads.begin() as session:
            found = session.execute(
                select(AgentJobRow.state, RunRow.status, RunRow.lease_expires_at)
                .join(RunRow, RunRow.id == AgentJobRow.run_id)
                .where(AgentJobRow.id == agent_job_id)).first()
        if found is None or found.state != "running" or not _run_gone(
                found.status, found.lease_expires_at, self.now()):
            return False
        return self.cancel(agent_job_id, "its run on the hub ended while an agent ran it (the "
                                         "process waiting for it was killed); its retry runs "
                                         "it again")

    def ended_before(self, job_id: str, agent_job_id: int) -> list[int]:
        """Earlier agent jobs of ``job_id`` that no one runs or waits for any more (their
        uploads can go)."""
        with self.db.reads.begin() as session:
            return [int(i) for i in session.execute(
                select(AgentJobRow.id).where(AgentJobRow.job_id == job_id,
                                             AgentJobRow.id < agent_job_id,
                                             AgentJobRow.state.in_(ENDED))).scalars()]

    def running_for(self, agent_id: int) -> AgentJob | None:
        """The job ``agent_id`` runs now, if any (``ferry agents list``)."""
        with self.db.reads.begin() as session:
            row = session.execute(select(AgentJobRow).where(
                AgentJobRow.agent_id == agent_id, AgentJobRow.state == "running")
                .order_by(AgentJobRow.id.desc()).limit(1)).scalar_one_or_none()
            return None if row is None else _job(row)


def _run_gone(status: str | None, lease_expires_at: datetime | None, now: datetime) -> bool:
    """Whether the hub run waiting for an agent job is over (or its process is gone)."""
    return status is not None and (status != "running" or (
        lease_expires_at is not None and lease_expires_at <= now))


def _job(row: AgentJobRow) -> AgentJob:
    return AgentJob(row.id, row.job_id, row.network, row.kind, dict(row.payload), row.state,
                    row.run_id, row.agent_id, row.attempt, row.lease_expires_at,
                    row.created_at, row.ended_at,
                    None if row.result is None else dict(row.result), row.error)
