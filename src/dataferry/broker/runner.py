"""Running jobs now, in dependency order (``ferry run``), with retries for transient errors.

A job whose dependency failed is skipped (and says why); a job for a platform in a
private network is handed to an agent of that network and waited for
(``dataferry.agent.dispatch``: "waiting for an agent of NETWORK"), then recorded here like
any other. Transient errors
(connection refused, timeouts, lock conflicts) are retried with exponential backoff and
jitter; terminal ones fail at once with the message the connector gave.

Every attempt is recorded in the run history of the metadata DB (``ferry runs``): each
retry is its own run (attempt 1, 2, 3), and a skipped job gets a run too, so the history
says why it did not run. Messages recorded are the ``FerryError`` texts, which never
hold secrets. They may hold row values (a failed check's examples, a value that does not
fit its type, a database's ``Failing row contains (...)``), so a failure is recorded
twice (``broker.failure``): the run's ``error`` and log lines get its public summary,
which every user and every event reads, and the full text and check examples are kept
apart for those who may read the rows. Warnings (undeclared columns, drift) name
columns and types only, so they are public.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, cast

from dataferry.broker.failure import RunFailure, describe_failure
from dataferry.broker.graph import Job
from dataferry.engine.context import RunContext
from dataferry.errors import FerryError
from dataferry.metadata import PublishedVersion
from dataferry.metadata.runs import JobKind, RunHistory, Trigger, VersionRef, worker_name
from dataferry.store.mirror_cache import pinning

ATTEMPTS = 3
BACKOFF = 0.5
LEASE_SECONDS = 300.0
"""How long a run row stays ``running`` without a heartbeat before it counts as dead
(``ferry up --lease``)."""
HEARTBEAT_SECONDS = 60.0
"""How often a running job extends its leases: this, or a fifth of the lease if shorter."""


@dataclass
class JobResult:
    job: Job
    status: str  # succeeded | failed | skipped | unchanged
    rows: int = 0
    version: int | None = None
    seconds: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    rows_in: int = 0
    """Rows read: from the source (ingest), input versions (transform), the store (deliver)."""
    rows_out: int = 0
    """Rows written: added to the new version (ingest), in it (transform), sent (deliver)."""
    versions_read: list[VersionRef] = field(default_factory=list)
    versions_written: list[VersionRef] = field(default_factory=list)
    run_id: int | None = None
    """The run history row of the last attempt."""
    attempts: int = 0
    failure: RunFailure | None = None
    """How a failed attempt is recorded: ``message`` is its full text (for the operator
    who ran ``ferry run``), ``failure.public`` what the run history shows everyone."""


def run_job(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
            full: bool, run_id: int | None = None) -> JobResult:
    """Run one job once; engine errors propagate (``run_jobs`` retries and records).

    ``full`` re-reads the source in full (ingest), recomputes a transform whose inputs
    and definition have not changed, or reloads the sink (deliver). A
    delivery or a transform records on its run ``run_id`` what it reads, so ``ferry gc``
    keeps it. A job of a private network runs on an agent of it, which may take up to
    ``context.agent_wait`` seconds to claim it. The store files it reads stay pinned
    in a bounded mirror until it ends (``mirror_cache.pinning``), not until the process
    (a scheduler's) ends."""
    with pinning():
        return _run_job(context, job, on_rows, full, run_id)


def _run_job(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
             full: bool, run_id: int | None) -> JobResult:
    platform = context.ecosystem.platforms.get(job.platform)
    if job.network or (platform is not None and platform.network):
        return _on_agent(context, job, on_rows, full, run_id)
    if job.kind == "ingest":
        return _ingest(context, job, on_rows, full)
    if job.kind == "transform":
        return _transform(context, job, on_rows, run_id, full)
    return _deliver(context, job, on_rows, full, run_id)


def _ingest(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
            full: bool) -> JobResult:
    from dataferry.engine.ingest import ingest

    started = time.monotonic()
    return _ingested(job, ingest(context, job.dataset, full=full, on_rows=on_rows), started)


def _on_agent(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
              full: bool, run_id: int | None) -> JobResult:
    from dataferry.agent.dispatch import WAIT_SECONDS, run_on_agent

    started = time.monotonic()

    def say(message: str) -> None:
        if run_id is not None:
            context.runs.log(run_id, "info", message)

    result = run_on_agent(context, job, run_id=run_id, full=full, on_rows=on_rows,
                          wait=context.agent_wait or WAIT_SECONDS, log=say)
    if job.kind == "deliver":
        return _delivered(job, result, full, started)
    if job.kind == "transform":
        return _transformed(context, job, result, started)
    return _ingested(job, result, started)


def _ingested(job: Job, result: Any, started: float) -> JobResult:
    """An ingest's ``JobResult`` from what ``engine.ingest`` returned."""
    if result.published is None:
        return JobResult(job, "unchanged", result.rows_read, None,
                         time.monotonic() - started, "nothing new", result.warnings,
                         rows_in=result.rows_read)
    published = result.published
    return JobResult(job, "succeeded", published.added_rows, published.version,
                     time.monotonic() - started, f"version {published.version}",
                     result.warnings, rows_in=result.rows_read, rows_out=published.added_rows,
                     versions_written=[VersionRef(job.dataset, published.version)])


def _transform(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
               run_id: int | None, full: bool) -> JobResult:
    started = time.monotonic()
    platform = context.ecosystem.platforms.get(job.platform)
    if platform is not None and platform.engine == "spark":
        # imported here: a run without Spark jobs never loads pyspark or sqlglot
        from dataferry.engine.spark import transform_on_spark

        done = transform_on_spark(context, job.dataset, job.platform, on_rows=on_rows,
                                  pin=_pin(context, run_id), full=full)
    else:
        from dataferry.engine.transform import transform

        done = transform(context, job.dataset, on_rows=on_rows, pin=_pin(context, run_id),
                         full=full)
    return _transformed(context, job, done, started)


def _transformed(context: RunContext, job: Job, done: Any, started: float) -> JobResult:
    """A transform's ``JobResult`` from what ``engine.transform`` returned."""
    published = done.published
    if published is None or published.unchanged:
        head = context.store.dataset(job.dataset).head()
        read = _lineage(context, job.dataset, head.number) if head is not None else []
        message = ("its inputs and definition have not changed" if published is None else
                   f"ran ({done.reason}): the output is the same as version "
                   f"{published.version}, nothing published")
        return JobResult(job, "unchanged", 0, None, time.monotonic() - started, message,
                         versions_read=read)
    read = _lineage(context, job.dataset, published.version)
    return JobResult(job, "succeeded", published.rows, published.version,
                     time.monotonic() - started,
                     f"version {published.version} ({done.reason})",
                     rows_in=sum(_version_rows(context, v) for v in read),
                     rows_out=published.rows, versions_read=read,
                     versions_written=[VersionRef(job.dataset, published.version)])


def _lineage(context: RunContext, ref: str, version: int) -> list[VersionRef]:
    """The input versions a transform's output was computed from, as its manifest says.

    Read back from the signed manifest rather than guessed from the inputs' heads, which
    may have moved on while the transform ran.
    """
    manifest = context.store.dataset(ref).version(version).manifest
    return [VersionRef(str(i["ref"]), int(i["version"])) for i in manifest.lineage]


def _version_rows(context: RunContext, version: VersionRef) -> int:
    """Rows of one stored version (a transform reads its inputs whole)."""
    return context.store.dataset(version.ref).version(version.version).manifest.rows


def _pin(context: RunContext, run_id: int | None) -> Callable[[list[VersionRef]], None]:
    """Records on the running run the versions its job is about to read (gc keeps them)."""

    def pin(versions: list[VersionRef]) -> None:
        if run_id is not None:
            context.runs.record_reading(run_id, versions)

    return pin


def _deliver(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
             full: bool, run_id: int | None) -> JobResult:
    from dataferry.engine.deliver import deliver

    assert job.consumer is not None and job.need is not None
    started = time.monotonic()
    counted = _RowCounter(on_rows)
    delivered = deliver(context, job.consumer, job.need, on_rows=counted, full=full,
                        pin=_pin(context, run_id))
    return _delivered(job, delivered, full, started, counted.rows)


def _delivered(job: Job, delivered: Any, full: bool, started: float,
               rows_in: int | None = None) -> JobResult:
    """A delivery's ``JobResult`` from what ``engine.deliver`` returned."""
    if delivered.rows == 0 and delivered.previous == delivered.version and not full:
        return JobResult(job, "unchanged", 0, delivered.version, time.monotonic() - started,
                         f"already has version {delivered.version}",
                         versions_read=[VersionRef(delivered.ref, delivered.version)])
    return JobResult(job, "succeeded", delivered.rows, delivered.version,
                     time.monotonic() - started,
                     f"version {delivered.previous or 0} -> {delivered.version}",
                     warnings=list(delivered.warnings),
                     rows_in=delivered.rows if rows_in is None else rows_in,
                     rows_out=delivered.rows,
                     versions_read=[VersionRef(delivered.ref, delivered.version)])


class _RowCounter:
    """Counts the rows a job streams, passing them on to the progress bar (if any)."""

    def __init__(self, inner: Callable[[int], None] | None) -> None:
        self.inner = inner
        self.rows = 0

    def __call__(self, rows: int) -> None:
        self.rows += rows
        if self.inner is not None:
            self.inner(rows)


def run_jobs(
    context: RunContext,
    jobs: list[Job],
    *,
    full: bool = False,
    progress: Any = None,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    trigger: Trigger = "manual",
) -> list[JobResult]:
    """Run ``jobs`` (already in dependency order), record each attempt, one result per job.

    ``trigger`` is what the run history says started them (``manual`` for ``ferry run``).
    """
    results: dict[str, JobResult] = {}
    for job in jobs:
        reason = _skip_reason(job, results)
        if reason is not None:
            results[job.id] = _record_skip(context.runs, job, trigger, reason)
            continue
        task = progress.start(job.id) if progress is not None else None
        results[job.id] = _run_attempts(context, job, task, full=full, attempts=attempts,
                                        sleep=sleep, trigger=trigger)
        if task is not None:
            task.finish(results[job.id].status)
    return [results[j.id] for j in jobs]


def run_recorded(context: RunContext, job: Job, *, trigger: Trigger,
                 attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep,
                 full: bool = False, lease_seconds: float = LEASE_SECONDS,
                 keep: Callable[[], object] | None = None) -> JobResult:
    """Run one job now with its retries, each attempt recorded (the scheduler's entry).

    Each attempt's run row lives ``lease_seconds`` past its last heartbeat; ``keep`` is
    called with every heartbeat too (the scheduler extends the job's lease with it)."""
    return _run_attempts(context, job, None, full=full, attempts=attempts, sleep=sleep,
                         trigger=trigger, lease_seconds=lease_seconds, keep=keep)


def _skip_reason(job: Job, results: dict[str, JobResult]) -> str | None:
    """Why ``job`` must not run here now, or None when it may."""
    failed = [d for d in job.inputs if d in results
              and results[d].status in ("failed", "skipped")]
    if failed:
        return f"{failed[0]} did not succeed"
    return None


def _record_skip(runs: RunHistory, job: Job, trigger: Trigger, reason: str) -> JobResult:
    """A skipped job gets a run too: the history then says why it did not run."""
    run_id = runs.start_run(job.id, cast(JobKind, job.kind), trigger, 1, worker_name(),
                            LEASE_SECONDS)
    runs.log(run_id, "info", f"skipped: {reason}")
    runs.finish_run(run_id, "skipped", error=reason)
    return JobResult(job, "skipped", message=reason, run_id=run_id, attempts=1)


def _run_attempts(context: RunContext, job: Job, task: Any, *, full: bool, attempts: int,
                  sleep: Callable[[float], None], trigger: Trigger,
                  lease_seconds: float = LEASE_SECONDS,
                  keep: Callable[[], object] | None = None) -> JobResult:
    """Run ``job`` until it ends or a non-transient error; each attempt is its own run."""
    runs = context.runs
    for attempt in range(1, attempts + 1):
        run_id = runs.start_run(job.id, cast(JobKind, job.kind), trigger, attempt,
                                worker_name(), lease_seconds)
        retry = False
        try:
            with _Heartbeat(runs, run_id, lease_seconds=lease_seconds, keep=keep):
                result = run_job(context, job, task.advance if task is not None else None, full,
                                 run_id)
        except FerryError as exc:
            retry = exc.transient and attempt < attempts
            failure = describe_failure(job.id, exc)
            message = str(exc)
            if exc.transient and not retry:  # the error cannot know it was the last try
                outcome = _gave_up(attempt)
                message += outcome
                failure = replace(failure, public=failure.public + outcome,
                                  detail=None if failure.detail is None
                                  else failure.detail + outcome)
            result = JobResult(job, "failed", message=message, failure=failure)
        except Exception as exc:  # a bug: say where, do not stop the other jobs
            failure = describe_failure(job.id, exc)
            result = JobResult(job, "failed", message=failure.detail or failure.public,
                               failure=failure)
        except BaseException:  # Ctrl-C: the run ended, say so rather than leave it running
            runs.log(run_id, "error", "interrupted")
            runs.finish_run(run_id, "failed", error="interrupted")
            raise
        result.run_id, result.attempts = run_id, attempt
        _record_end(runs, run_id, result, retry=retry,
                    published=_published(context, result.versions_written))
        if not retry:
            return result
        delay = BACKOFF * 2 ** (attempt - 1) * (1 + random.random())
        runs.log(run_id, "info", f"transient error: retrying in {delay:.1f} s "
                                 f"(attempt {attempt + 1} of {attempts})")
        sleep(delay)
    raise AssertionError("unreachable: the last attempt never retries")


def _gave_up(attempts: int) -> str:
    """What a transient error's text gets when no retry follows it."""
    if attempts == 1:
        return " (a transient error; run it again to retry)"
    return f" (a transient error; gave up after {attempts} attempts)"


def _published(context: RunContext, written: list[VersionRef]) -> list[PublishedVersion]:
    """What the ``version.published`` events of the versions a run wrote say."""
    out = []
    for ref in written:
        version = context.store.dataset(ref.ref).version(ref.version)
        manifest = version.manifest
        out.append(PublishedVersion(ref.ref, ref.version, manifest.rows, version.hash,
                                    datetime.fromisoformat(manifest.created_at),
                                    manifest.added_rows, manifest.removed_rows))
    return out


def _record_end(runs: RunHistory, run_id: int, result: JobResult, *, retry: bool,
                published: list[PublishedVersion]) -> None:
    """Write how an attempt ended: its log lines first, then the run row's verdict (with
    its events, in the same transaction)."""
    for warning in result.warnings:
        runs.log(run_id, "warning", warning)
    failure = None
    if result.status == "failed":
        failure = result.failure or RunFailure(f"{result.job.id} failed", result.message)
        attempt = f"attempt {result.attempts} failed: "
        runs.log(run_id, "error", attempt + failure.public,
                 detail=None if failure.detail is None else attempt + failure.detail)
        if result.attempts > 1 and not retry:
            runs.log(run_id, "info", f"gave up after {result.attempts} attempts")
    else:
        runs.log(run_id, "info", f"{result.status}: {result.message}")
    runs.finish_run(run_id, cast(Any, result.status), rows_in=result.rows_in,
                    rows_out=result.rows_out, versions_read=result.versions_read,
                    versions_written=result.versions_written,
                    error=failure.public if failure is not None else None,
                    error_detail=failure.detail if failure is not None else None,
                    checks=[c.to_json() for c in failure.checks] if failure else (),
                    published=published)


class _Heartbeat:
    """Extends a running run's lease from a background thread while its job works.

    Without it a job longer than the lease would look abandoned to a scheduler sweeping
    for dead workers, which would then retry it while it is still running. ``keep`` is
    called on every beat too: the scheduler extends the job's own lease with it, so no
    other scheduler takes a job that is still running.
    """

    def __init__(self, runs: RunHistory, run_id: int, every: float | None = None, *,
                 lease_seconds: float = LEASE_SECONDS,
                 keep: Callable[[], object] | None = None) -> None:
        self.runs, self.run_id = runs, run_id
        self.lease_seconds, self.keep = lease_seconds, keep
        self.every = min(HEARTBEAT_SECONDS, lease_seconds / 5) if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}",
                                        daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.runs.heartbeat(self.run_id, self.lease_seconds):
                    return  # declared abandoned elsewhere: nothing left to extend
                if self.keep is not None:
                    self.keep()
            except Exception:  # a missed beat is not fatal: the lease has slack; try again
                continue

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
