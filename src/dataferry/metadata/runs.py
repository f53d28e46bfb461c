"""Run history: what the runner and scheduler record about every job attempt.

A run starts ``running`` with a lease on its own row that the worker extends with
``heartbeat``; a run still ``running`` after its lease expired belongs to a process
that died without saying so (SIGKILL, OOM killer, power loss). Any scheduler can find
those with ``expired_runs`` and claim each one once with ``mark_abandoned``.

Everything returned is a frozen dataclass: callers never hold a connection.

A failed run's ``error`` and every log line's ``message`` are *public*: every logged-in
user, the event stream and webhooks read them, so they never hold row values or keys.
What may hold them (an error's full text, a failed check's example rows) is recorded
apart (``run_errors``, a log line's ``detail``) and read with ``error_detail`` by those
who may read the job's rows.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from dataferry.errors import MetadataError
from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.dbapi import Transaction, is_integrity_error
from dataferry.metadata.outbox import (
    RUN_FAILED,
    RUN_SUCCEEDED,
    VERSION_PUBLISHED,
    PublishedVersion,
    add_event,
)

JobKind = Literal["ingest", "transform", "deliver"]
Trigger = Literal["manual", "schedule", "freshness", "on_change", "definition", "retry"]
Status = Literal["queued", "running", "succeeded", "unchanged", "failed", "skipped"]
Level = Literal["debug", "info", "warning", "error"]
FINISHED: frozenset[str] = frozenset({"succeeded", "unchanged", "failed", "skipped"})
CONSUMED = ("succeeded", "unchanged")
ABANDONED = "abandoned: "
"""How the error of a run whose process died begins (``mark_abandoned``)."""
"""Runs after which a job has seen its inputs and its data is current (a failed one has
not): the scheduler, the catalog's freshness and the run events go by these."""


@dataclass(frozen=True)
class VersionRef:
    """A dataset version a run read or wrote: ``shop.orders`` version 7."""

    ref: str
    version: int


@dataclass(frozen=True)
class Hold:
    """A version gc must keep because a job holds it: ``why`` says which job and how
    (its last delivery, or a run reading it now)."""

    version: int
    job_id: str
    why: str


@dataclass(frozen=True)
class LogLine:
    """One log line: ``message`` is public; ``detail`` (if any) the same line in full,
    which may hold row values, for those who may read the job's rows only."""

    at: datetime
    level: str
    message: str
    detail: str | None = None


@dataclass(frozen=True)
class ErrorDetail:
    """What a failed run recorded apart from its public ``error``: the full text (None:
    the public one says it all) and its failed checks as JSON objects (``dataset``,
    ``check``, ``column``, ``failing_rows``, ``summary``, ``examples``)."""

    detail: str | None
    checks: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Run:
    """One attempt at one job, as recorded; times are aware UTC datetimes."""

    id: int
    job_id: str
    job_kind: str
    trigger: str
    status: str
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    rows_in: int
    rows_out: int
    versions_read: tuple[VersionRef, ...]
    versions_written: tuple[VersionRef, ...]
    error: str | None
    worker: str
    lease_expires_at: datetime | None

    @property
    def seconds(self) -> float | None:
        """How long the run took; None while it has not ended."""
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class RunDetail(Run):
    """A run with its log lines, oldest first (``ferry runs ID``, ``GET /runs/{id}``)."""

    log: tuple[LogLine, ...]
    has_detail: bool = False
    """Whether the run recorded more than its public texts (see ``error_detail``)."""


def abandoned(run: Run) -> bool:
    """Whether ``run`` failed because its process died (its lease expired)."""
    return run.status == "failed" and (run.error or "").startswith(ABANDONED)


def worker_name() -> str:
    """``host:pid`` of this process: where a run ran, and whose heartbeat stopped."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunHistory:
    """Records runs in the metadata database and reads them back.

    ``now`` is the clock for every timestamp and lease; tests pass a fake one. Plain SQL
    through the driver (``dbapi``): a run records itself before it reads its source,
    and SQLAlchemy would double what a run costs before then.
    """

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def start_run(self, job_id: str, kind: JobKind, trigger: Trigger, attempt: int,
                  worker: str, lease_seconds: float) -> int:
        """Record that ``worker`` started a job now; returns the new run's id.

        The run must call ``heartbeat`` within ``lease_seconds`` or it counts as dead.
        """
        _check(kind, JobKind, "job kind")
        _check(trigger, Trigger, "trigger")
        now = self.now()
        with self.db.sql.transaction() as sql:
            return int(sql.execute(
                'INSERT INTO runs (job_id, job_kind, "trigger", status, attempt, started_at, '
                "rows_in, rows_out, versions_read, versions_written, worker, lease_expires_at) "
                "VALUES (:job_id, :kind, :trigger, 'running', :attempt, :now, 0, 0, :empty, "
                ":empty, :worker, :expires) RETURNING id",
                job_id=job_id, kind=kind, trigger=trigger, attempt=attempt, now=sql.time(now),
                empty=sql.json([]), worker=worker,
                expires=sql.time(now + timedelta(seconds=lease_seconds))).fetchone()[0])

    def log(self, run_id: int, level: Level, message: str, detail: str | None = None) -> None:
        """Append a line to a run's log: ``message`` for everyone who may see the run (no
        row values), ``detail`` the full line for those who may read its rows."""
        _check(level, Level, "log level")
        try:
            with self.db.sql.transaction() as sql:
                sql.execute("INSERT INTO run_logs (run_id, at, level, message, detail) "
                            "VALUES (:run_id, :at, :level, :message, :detail)",
                            run_id=run_id, at=sql.time(self.now()), level=level,
                            message=message, detail=None if detail == message else detail)
        except Exception as error:
            if not is_integrity_error(error):
                raise
            raise MetadataError(f"cannot log to run {run_id}: there is no such run") from error

    def finish_run(self, run_id: int, status: Status, rows_in: int = 0, rows_out: int = 0,
                   versions_read: Iterable[VersionRef] = (),
                   versions_written: Iterable[VersionRef] = (),
                   error: str | None = None,
                   published: Collection[PublishedVersion] = (),
                   error_detail: str | None = None,
                   checks: Iterable[dict[str, Any]] = ()) -> bool:
        """Record how a running run ended, with its events (``outbox``: the run's, and
        one for each of the ``published`` versions); False if it was no longer running.

        ``error`` is the public summary of a failure (events carry it: no row values);
        ``error_detail`` and ``checks`` are kept apart for ``error_detail``.

        That happens when another scheduler already declared it abandoned because its
        heartbeat stopped (and may have started a retry): the first verdict stands, and
        the caller learns its result was not recorded.
        """
        if status not in FINISHED:
            raise ValueError(f"{status!r} is not a finished status: {', '.join(sorted(FINISHED))}")
        with self.db.sql.transaction() as sql:
            found = sql.execute(
                "UPDATE runs SET status = :status, ended_at = :now, rows_in = :rows_in, "
                "rows_out = :rows_out, versions_read = :read, versions_written = :written, "
                "error = :error, lease_expires_at = NULL "
                f"WHERE id = :id AND status = 'running' RETURNING {_COLUMNS}",
                status=status, now=sql.time(self.now()), rows_in=rows_in, rows_out=rows_out,
                read=sql.json(_to_json(versions_read)),
                written=sql.json(_to_json(versions_written)), error=error, id=run_id,
            ).fetchone()
            if found is None:
                return False
            checked = list(checks)
            if (error_detail is not None and error_detail != error) or checked:
                sql.execute("INSERT INTO run_errors (run_id, detail, checks) "
                            "VALUES (:id, :detail, :checks)", id=run_id, detail=error_detail,
                            checks=sql.json(checked or None))
            add_run_events(sql, _run(sql, found), published)
            return True

    def record_reading(self, run_id: int, versions: Iterable[VersionRef]) -> bool:
        """Record, while a run still runs, the versions it is about to read, so that ``ferry
        gc`` (``held_versions``) keeps them until it ends; False if it no longer runs."""
        with self.db.sql.transaction() as sql:
            return sql.execute(
                "UPDATE runs SET versions_read = :read WHERE id = :id AND status = 'running'",
                read=sql.json(_to_json(versions)), id=run_id).rowcount == 1

    def held_versions(self, ref: str, jobs: Collection[str] | None = None) -> list[Hold]:
        """The versions of dataset ``ref`` that jobs still hold, from the run history alone
        (no sink is contacted): what the last successful run of every delivery read (the
        version its sink has), and what every run still running with a live lease reads
        (``record_reading``). ``jobs``, if given, limits the deliveries to those job ids
        (those of the consumers the model still declares)."""
        held: list[Hold] = []
        with self.db.sql.transaction(read_only=True) as sql:
            last = _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE id IN (SELECT max(id) "
                              "FROM runs WHERE job_kind = 'deliver' AND status IN "
                              "('succeeded', 'unchanged') GROUP BY job_id)")
            running = _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE status = 'running' "
                                 "AND lease_expires_at > :now", now=sql.time(self.now()))
        for run in last:
            if jobs is None or run.job_id in jobs:
                held += [Hold(v.version, run.job_id, f"its last delivery (run {run.id})")
                         for v in run.versions_read if v.ref == ref]
        for run in running:
            held += [Hold(v.version, run.job_id, f"run {run.id}, running, reads it")
                     for v in run.versions_read if v.ref == ref]
        return sorted(held, key=lambda h: (h.version, h.job_id))

    def heartbeat(self, run_id: int, lease_seconds: float) -> bool:
        """Extend a running run's lease; False means it was declared abandoned: stop."""
        with self.db.sql.transaction() as sql:
            return sql.execute(
                "UPDATE runs SET lease_expires_at = :expires "
                "WHERE id = :id AND status = 'running'",
                expires=sql.time(self.now() + timedelta(seconds=lease_seconds)),
                id=run_id).rowcount == 1

    def expired_runs(self, now: datetime | None = None) -> list[Run]:
        """Runs still ``running`` whose lease expired by ``now``: their process is gone."""
        at = self.now() if now is None else now
        with self.db.sql.transaction(read_only=True) as sql:
            return _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE status = 'running' "
                              "AND lease_expires_at <= :at ORDER BY id", at=sql.time(at))

    def mark_abandoned(self, run_id: int) -> bool:
        """Fail a run whose lease expired; True for the one caller that did it.

        Several schedulers may sweep at once; the conditional update lets exactly one of
        them win, so exactly one schedules the retry.
        """
        now = self.now()
        with self.db.sql.transaction() as sql:
            found = _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE id = :id", id=run_id)
            if (not found or found[0].status != "running"
                    or found[0].lease_expires_at is None):
                return False
            message = (f"{ABANDONED}worker {found[0].worker} stopped heartbeating; its lease "
                       f"expired at {found[0].lease_expires_at.isoformat()}")
            row = sql.execute(
                "UPDATE runs SET status = 'failed', ended_at = :now, error = :error, "
                "lease_expires_at = NULL WHERE id = :id AND status = 'running' "
                f"AND lease_expires_at <= :now RETURNING {_COLUMNS}",
                now=sql.time(now), error=message, id=run_id).fetchone()
            if row is None:
                return False
            sql.execute("INSERT INTO run_logs (run_id, at, level, message) "
                        "VALUES (:id, :at, 'error', :message)",
                        id=run_id, at=sql.time(now), message=message)
            add_run_events(sql, _run(sql, row))
            return True

    def list_runs(self, limit: int = 50, offset: int = 0, failed_only: bool = False,
                  job_id: str | None = None) -> list[Run]:
        """Runs newest first (by start order), optionally only failed ones or one job's."""
        where = ["status = 'failed'"] if failed_only else []
        if job_id is not None:
            where.append("job_id = :job_id")
        with self.db.sql.transaction(read_only=True) as sql:
            return _runs(sql, f"SELECT {_COLUMNS} FROM runs {_where(where)} "
                              "ORDER BY id DESC LIMIT :limit OFFSET :offset",
                         job_id=job_id, limit=limit, offset=offset)

    def ended_since(self, moment: datetime | None, limit: int = 100) -> list[Run]:
        """Runs that ended after ``moment`` (all ended runs when None), oldest end first:
        what an event stream has not sent yet."""
        where = ["ended_at IS NOT NULL"] + ([] if moment is None else ["ended_at > :moment"])
        with self.db.sql.transaction(read_only=True) as sql:
            return _runs(sql, f"SELECT {_COLUMNS} FROM runs {_where(where)} "
                              "ORDER BY ended_at, id LIMIT :limit",
                         moment=sql.time(moment), limit=limit)

    def last_run(self, job_id: str, statuses: Iterable[str] | None = None) -> Run | None:
        """The newest run of ``job_id`` (with one of ``statuses``, if given)."""
        where = ["job_id = :job_id"]
        named: dict[str, Any] = {}
        if statuses is not None:
            where.append(_status_in(statuses, named))
        with self.db.sql.transaction(read_only=True) as sql:
            found = _runs(sql, f"SELECT {_COLUMNS} FROM runs {_where(where)} "
                               "ORDER BY id DESC LIMIT 1", job_id=job_id, **named)
            return found[0] if found else None

    def latest_runs(self, statuses: Iterable[str] | None = None) -> dict[str, Run]:
        """The newest run of every job (with one of ``statuses``, if given), by job id:
        ``last_run`` for all jobs in one query."""
        named: dict[str, Any] = {}
        where = [] if statuses is None else [_status_in(statuses, named)]
        with self.db.sql.transaction(read_only=True) as sql:
            rows = _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE id IN (SELECT max(id) "
                              f"FROM runs {_where(where)} GROUP BY job_id)", **named)
            return {run.job_id: run for run in rows}

    def changed_runs(self, after_id: int, running: Collection[int]) -> list[Run]:
        """Runs started after run ``after_id``, and the runs of ``running`` as they are
        now (a run's row changes only while it runs), by id."""
        named = {f"r{n}": run_id for n, run_id in enumerate(sorted(running))}
        changed = "id > :after" + (f" OR id IN ({', '.join(':' + k for k in named)})"
                                   if named else "")
        with self.db.sql.transaction(read_only=True) as sql:
            return _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE {changed} ORDER BY id",
                         after=after_id, **named)

    def running_ids(self) -> set[int]:
        with self.db.sql.transaction(read_only=True) as sql:
            return {int(row[0]) for row in
                    sql.execute("SELECT id FROM runs WHERE status = 'running'").fetchall()}

    def start_times(self, run_ids: Collection[int]) -> dict[int, datetime]:
        """When each of these runs started (those that exist)."""
        if not run_ids:
            return {}
        named = {f"r{n}": run_id for n, run_id in enumerate(sorted(run_ids))}
        with self.db.sql.transaction(read_only=True) as sql:
            rows = sql.execute("SELECT id, started_at FROM runs WHERE id IN ("
                               + ", ".join(":" + key for key in named) + ")",
                               **named).fetchall()
            return {run_id: sql.read_stamp(started) for run_id, started in rows}

    def get_run(self, run_id: int) -> RunDetail | None:
        """One run with its log lines, or None if there is no such run."""
        with self.db.sql.transaction(read_only=True) as sql:
            found = _runs(sql, f"SELECT {_COLUMNS} FROM runs WHERE id = :id", id=run_id)
            if not found:
                return None
            log = tuple(LogLine(sql.read_stamp(at), level, message, detail)
                        for at, level, message, detail in sql.execute(
                            "SELECT at, level, message, detail FROM run_logs "
                            "WHERE run_id = :id ORDER BY id", id=run_id).fetchall())
            recorded = sql.execute("SELECT 1 FROM run_errors WHERE run_id = :id",
                                   id=run_id).fetchone() is not None
            return RunDetail(**vars(found[0]), log=log,
                             has_detail=recorded or any(line.detail for line in log))

    def error_detail(self, run_id: int) -> ErrorDetail | None:
        """The detail a failed run recorded apart from its public ``error`` (None: none).
        It may hold row values: show it only to those who may read the job's rows."""
        with self.db.sql.transaction(read_only=True) as sql:
            found = sql.execute("SELECT detail, checks FROM run_errors WHERE run_id = :id",
                                id=run_id).fetchone()
            if found is None:
                return None
            return ErrorDetail(found[0], tuple(sql.read_json(found[1]) or ()))


def add_run_events(sql: Transaction, run: Run,
                   published: Collection[PublishedVersion] = ()) -> None:
    """The events of a finished run, in its transaction.

    - ``run.failed`` for a failed or skipped run;
    - ``run.succeeded`` for a run that did something (``succeeded``), or one that found
      nothing new (``unchanged``) right after a failed one: the job has recovered. A
      run that found nothing new, again, is not news (an ecosystem of 10,000 jobs would
      otherwise announce tens of thousands of non-events an hour);
    - ``version.published`` for each version it published.

    Run events carry what the run read and wrote (``read``, ``written``: ref + version).
    """
    recovered = False
    if run.status in CONSUMED:
        before = sql.execute("SELECT status FROM runs WHERE job_id = :job_id AND id < :id "
                             "ORDER BY id DESC LIMIT 1", job_id=run.job_id, id=run.id).fetchone()
        recovered = before is not None and before[0] in ("failed", "skipped")
        if run.status == "unchanged" and not recovered:
            return
    at = run.ended_at or run.started_at
    add_event(sql, f"run-{run.id}", RUN_SUCCEEDED if run.status in CONSUMED else RUN_FAILED,
              f"/runs/{run.id}", run.job_id, at,
              {"run": run.id, "job": run.job_id, "status": run.status, "attempt": run.attempt,
               "recovered": recovered, "rows_in": run.rows_in, "rows_out": run.rows_out,
               "read": _to_json(run.versions_read), "written": _to_json(run.versions_written),
               "error": run.error})
    for version in published:
        add_event(sql, f"version-{version.ref}-{version.version}", VERSION_PUBLISHED,
                  f"/datasets/{version.ref}", version.ref, version.created_at,
                  {"ref": version.ref, "version": version.version, "rows": version.rows,
                   "added": version.added, "removed": version.removed,
                   "manifest_hash": version.manifest_hash})


_COLUMNS = ('id, job_id, job_kind, "trigger", status, attempt, started_at, ended_at, rows_in, '
            "rows_out, versions_read, versions_written, error, worker, lease_expires_at")


def _runs(sql: Transaction, query: str, **params: Any) -> list[Run]:
    return [_run(sql, row) for row in sql.execute(query, **params).fetchall()]


def _run(sql: Transaction, row: Any) -> Run:
    (id_, job_id, job_kind, trigger, status, attempt, started_at, ended_at, rows_in, rows_out,
     read, written, error, worker, lease_expires_at) = row
    return Run(
        id=int(id_), job_id=job_id, job_kind=job_kind, trigger=trigger, status=status,
        attempt=int(attempt), started_at=sql.read_stamp(started_at), ended_at=sql.read_time(ended_at),
        rows_in=int(rows_in), rows_out=int(rows_out),
        versions_read=_from_json(sql.read_json(read)),
        versions_written=_from_json(sql.read_json(written)), error=error, worker=worker,
        lease_expires_at=sql.read_time(lease_expires_at),
    )


def _where(conditions: list[str]) -> str:
    return ("WHERE " + " AND ".join(f"({c})" for c in conditions)) if conditions else ""


def _status_in(statuses: Iterable[str], named: dict[str, Any]) -> str:
    """``status IN (...)`` with one parameter per status (added to ``named``)."""
    wanted = sorted(set(statuses))
    if not wanted:
        return "1 = 0"
    named.update({f"s{n}": status for n, status in enumerate(wanted)})
    return f"status IN ({', '.join(f':s{n}' for n in range(len(wanted)))})"


def _check(value: str, allowed: Any, what: str) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{value!r} is not a {what}: use one of {', '.join(choices)}")


def _to_json(versions: Iterable[VersionRef]) -> list[dict[str, Any]]:
    return [{"ref": v.ref, "version": v.version} for v in versions]


def _from_json(versions: list[dict[str, Any]] | None) -> tuple[VersionRef, ...]:
    return tuple(VersionRef(str(v["ref"]), int(v["version"])) for v in versions or [])


class LatestRuns:
    """The newest run of every job, and its newest run with a status in ``counted``,
    kept current for a scheduler that asks about every job on every tick.

    The first ``refresh`` reads them with two grouped queries; each later one reads only
    what changed since: runs with a higher id, and those that were still running (only
    a running run's row changes). A tick over 10,000 jobs thus costs one small query
    instead of a query or two per job.
    """

    def __init__(self, history: RunHistory, counted: Collection[str]) -> None:
        self.history = history
        self.counted = frozenset(counted)
        self._last: dict[str, Run] = {}
        self._counted: dict[str, Run] = {}
        self._seen = -1  # no refresh yet
        self._running: set[int] = set()

    def refresh(self) -> None:
        if self._seen < 0:
            self._last = self.history.latest_runs()
            self._counted = self.history.latest_runs(self.counted)
            self._running = self.history.running_ids()
            self._seen = max((run.id for run in self._last.values()), default=0)
            return
        for run in self.history.changed_runs(self._seen, self._running):
            self._seen = max(self._seen, run.id)
            if run.status == "running":
                self._running.add(run.id)
            else:
                self._running.discard(run.id)
            last = self._last.get(run.job_id)
            if last is None or last.id <= run.id:
                self._last[run.job_id] = run
            counted = self._counted.get(run.job_id)
            if run.status in self.counted and (counted is None or counted.id <= run.id):
                self._counted[run.job_id] = run

    def last(self, job_id: str) -> Run | None:
        """The job's newest run, as of the last ``refresh``."""
        return self._last.get(job_id)

    def last_counted(self, job_id: str) -> Run | None:
        """The job's newest run with a status in ``counted``, as of the last ``refresh``."""
        return self._counted.get(job_id)
