"""Running jobs now, in dependency order (``ferry run``), with retries for transient errors.

A job whose dependency failed is skipped (and says why); a job for a platform in a
private network waits for that network's agent and is skipped here. Transient errors
(connection refused, timeouts, lock conflicts) are retried with exponential backoff and
jitter; terminal ones fail at once with the message the connector gave.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataferry.broker.graph import Job
from dataferry.engine.context import RunContext
from dataferry.errors import FerryError

ATTEMPTS = 3
BACKOFF = 0.5


@dataclass
class JobResult:
    job: Job
    status: str  # succeeded | failed | skipped | unchanged
    rows: int = 0
    version: int | None = None
    seconds: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)


def run_job(context: RunContext, job: Job, on_rows: Callable[[int], None] | None,
            full: bool) -> JobResult:
    from dataferry.engine.deliver import deliver
    from dataferry.engine.ingest import ingest
    from dataferry.engine.transform import transform

    started = time.monotonic()
    if job.kind == "ingest":
        result = ingest(context, job.dataset, full=full, on_rows=on_rows)
        if result.published is None:
            return JobResult(job, "unchanged", result.rows_read, None,
                             time.monotonic() - started, "nothing new", result.warnings)
        return JobResult(job, "succeeded", result.published.added_rows,
                         result.published.version, time.monotonic() - started,
                         f"version {result.published.version}", result.warnings)
    if job.kind == "transform":
        done = transform(context, job.dataset, on_rows=on_rows)
        if done.published is None:
            return JobResult(job, "unchanged", 0, None, time.monotonic() - started,
                             "its inputs have not changed")
        return JobResult(job, "succeeded", done.published.rows, done.published.version,
                         time.monotonic() - started, f"version {done.published.version}")
    assert job.consumer is not None and job.need is not None
    delivered = deliver(context, job.consumer, job.need, on_rows=on_rows)
    if delivered.rows == 0 and delivered.previous == delivered.version:
        return JobResult(job, "unchanged", 0, delivered.version, time.monotonic() - started,
                         f"already has version {delivered.version}")
    return JobResult(job, "succeeded", delivered.rows, delivered.version,
                     time.monotonic() - started,
                     f"version {delivered.previous or 0} -> {delivered.version}")


def run_jobs(
    context: RunContext,
    jobs: list[Job],
    *,
    full: bool = False,
    progress: Any = None,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[JobResult]:
    """Run ``jobs`` (already in dependency order) and return one result per job."""
    results: dict[str, JobResult] = {}
    remote = {p for p, spec in context.ecosystem.platforms.items() if spec.network}
    for job in jobs:
        failed = [d for d in job.inputs if d in results
                  and results[d].status in ("failed", "skipped")]
        if failed:
            results[job.id] = JobResult(job, "skipped", message=f"{failed[0]} did not succeed")
            continue
        if job.platform in remote:
            results[job.id] = JobResult(
                job, "skipped",
                message=f"runs on the agent of network {job.network or job.platform} "
                        "(ferry agent), not here")
            continue
        task = progress.start(job.id) if progress is not None else None
        for attempt in range(1, attempts + 1):
            try:
                results[job.id] = run_job(context, job,
                                          task.advance if task is not None else None, full)
                break
            except FerryError as exc:
                if exc.transient and attempt < attempts:
                    sleep(BACKOFF * 2 ** (attempt - 1) * (1 + random.random()))
                    continue
                results[job.id] = JobResult(job, "failed", message=str(exc))
                break
            except Exception as exc:  # a bug: say where, do not stop the other jobs
                where = traceback.extract_tb(exc.__traceback__)[-1]
                results[job.id] = JobResult(
                    job, "failed",
                    message=f"internal error {type(exc).__name__}: {exc} "
                            f"({where.filename}:{where.lineno}); rerun with --debug")
                break
        if task is not None:
            task.finish(results[job.id].status)
    return [results[j.id] for j in jobs]
