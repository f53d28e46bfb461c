"""The scheduler behind ``ferry up`` and ``ferry serve``: what runs when.

It follows the plan applied with ``ferry apply`` (jobs of the model that are not applied
yet wait for the next apply); without an applied plan, the model as it is. Each tick it
asks, for every job of the plan, whether it is due:

- **cron** (an ingest's ``schedule``, a transformer's cron ``trigger``): the next time the
  expression names after the job's last run (or after the scheduler started) has come;
- **freshness** (ingests of data that consumers need): the consumers downstream ask for
  data no older than their ``freshness`` (default ``defaults.freshness``), so the ingest
  runs every half of the smallest of them, leaving the other half for transforms and
  deliveries;
- **stream** (ingests of ``mqtt`` and ``nats`` sources, unless they have a ``schedule``):
  every ``batch: seconds`` (default 10) after the last run started, whoever needs them
  (their runs say ``schedule``);
- **on_change** (transformers, deliveries): an input has a newer version than the one the
  job last read (the transform's output lineage, the delivery's last recorded version);
- **definition** (``on_change`` transformers): the transformer's latest version was
  computed by another definition (SQL, columns, key, checks, masks: ``engine.definition``);
- **retry**: a run whose lease expired (its process was killed) is marked abandoned,
  once, by whichever scheduler sees it first; while a job's newest run is an abandoned
  one, the job is due again at once, for every scheduler (the run history says so, not
  the memory of the one that marked it, which may die too).

A job that cannot be decided (its input's store fails to answer, a version cannot be
read) is reported in the tick's ``errors`` and asked again at the next tick; the other
jobs go on, and the scheduler keeps running.

A job of a private network is due by the same rules once an agent of the network is
enrolled (``ferry agents enroll``); the worker then hands it to that agent and waits
(``dataferry.agent.dispatch``).

Due jobs go to a bounded pool of worker threads. Before running, a worker takes the job's
lease in the metadata DB and asks again whether the job is due, against the database: so
two schedulers sharing one database (two ``ferry up`` on one PostgreSQL) never run a job
twice, and one that finished elsewhere meanwhile is not repeated (a retry neither: once
any run followed the abandoned one, the ordinary rules decide). A job whose newest run is
still ``running`` with a live lease is not due at all: the run's row, not only the job's
lease, says a job is taken (the job's lease is taken a moment before its run starts, so
it may end a moment before the run's). The run's heartbeat
extends the job's lease with the run's, so a job running longer than a lease keeps it,
and a killed one is free again within one lease (``lease_seconds``, ``ferry up
--lease``). A job is never queued twice in one scheduler either.

Each tick also hands the new events of the outbox to the consumers' ``notify`` targets
(``dataferry.events.notifier``), in a thread of their own, and reports targets that start
or stop failing.

A tick reads the run history through ``LatestRuns`` (only what changed since the last
tick) and the head of every dataset in one walk of the store (``Store.heads``; in a
bucket, each input's head once, when a job first needs it), so deciding over 100,000
jobs takes well under a second (``bench/broker.py``, ``bench/scale.py``). A version
published while a tick decides is seen by the next tick.

After each tick the scheduler marks deliveries stale whose data is older than their
need's ``freshness`` and clears the mark when fresh data arrives (``Staleness``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from croniter import croniter

from dataferry.broker.failure import describe_failure
from dataferry.broker.graph import Graph, Job, build_graph, shared
from dataferry.broker.runner import ATTEMPTS, LEASE_SECONDS, JobResult, run_recorded
from dataferry.engine.context import RunContext
from dataferry.engine.definition import (
    Definition,
    module_file,
    rebuild_reason,
    transformer_definition,
)
from dataferry.errors import FerryError
from dataferry.events.notifier import Notifier
from dataferry.metadata import (
    CONSUMED,
    LatestRuns,
    Leases,
    PlanHistory,
    Progress,
    Run,
    RunHistory,
    Staleness,
    abandoned,
    utcnow,
    worker_name,
)
from dataferry.model.spec import StreamBatch, Transformer, duration_seconds

MANUAL_TRIGGERS = ("freshness", "on_change", "manual", "stream")
CHANGES_EVERY = timedelta(seconds=1)
"""An ingest that reads a change log runs again this soon after its last run started (at
the next tick), whatever its consumers' freshness: its changes wait in the source's log
(a replication slot holds WAL), so it reads them as they come (``ferry up``)."""
RETRY_FAILED_AFTER = timedelta(minutes=1)
"""A job whose last run failed (after its own retries) waits this long before the next."""


@dataclass
class TickReport:
    """What one tick decided: jobs started (with their trigger) and retries claimed."""

    started: list[tuple[str, str]] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    notify_failed: list[tuple[str, str]] = field(default_factory=list)
    """Notify targets that started failing (or failed otherwise than before), with why."""
    notify_recovered: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    """Jobs that could not be decided (the store or a database failed), with the public
    summary of why; they are asked again at the next tick."""


class _Runs(Protocol):
    """The runs a decision reads: a tick's ``LatestRuns``, or the database job by job."""

    def last(self, job_id: str) -> Run | None: ...

    def last_counted(self, job_id: str) -> Run | None: ...


class _AskTheDatabase:
    """``_Runs`` read from the metadata DB now: the re-check under a job's lease."""

    def __init__(self, history: RunHistory) -> None:
        self.history = history

    def last(self, job_id: str) -> Run | None:
        return self.history.last_run(job_id)

    def last_counted(self, job_id: str) -> Run | None:
        return self.history.last_run(job_id, CONSUMED)


class Scheduler:
    """Runs the plan's jobs when they are due (see the module docstring)."""

    def __init__(self, context: RunContext, *, workers: int = 4,
                 lease_seconds: float = LEASE_SECONDS,
                 attempts: int = ATTEMPTS, now: Callable[[], datetime] = utcnow,
                 holder: str | None = None,
                 on_result: Callable[[JobResult], None] | None = None) -> None:
        self.context = context
        self.graph: Graph = build_graph(context.index)
        self.applied, self.unapplied = _follow_applied_plan(context, self.graph)
        self._next_context: RunContext | None = None
        self._retired: list[Notifier] = []
        self.runs = RunHistory(context.metadata, now=now)
        context.runs.now = now  # the runs the runner records follow the same clock
        self.leases = Leases(context.metadata, now=now)
        self.staleness = Staleness(context.metadata, now=now)
        self.now = now
        self.holder = holder or worker_name()
        self.lease_seconds = lease_seconds
        self.attempts = attempts
        self.on_result = on_result
        self.started_at = now()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferry-job")
        self.running: dict[str, Future[JobResult | None]] = {}
        self.once: set[str] | None = None
        """In a ``run_until_idle`` pass: the jobs it started already."""
        self._lock = threading.Lock()
        self.deliveries = _deliveries(context, self.graph)
        self.intervals = _freshness_intervals(
            self.graph, [*self.deliveries.values(), *_shared_needs(context, self.graph)])
        self.remote = {name: p.network for name, p in context.ecosystem.platforms.items()
                       if p.network}
        self.agent_networks: set[str] = set()
        """Networks with an enrolled agent (read each tick): their jobs go to the agent."""
        self.latest = LatestRuns(self.runs, CONSUMED)
        self.notifier = Notifier(context, now=now, holder=self.holder)
        self._notifying: Future[list[Progress]] | None = None
        self.notify_errors: dict[str, str | None] = {
            p.target: p.last_error for p in self.notifier.progress.all()}
        """Each notify target's last error (None: delivering), to report changes."""
        self._notify_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-notify")
        self._lineages: dict[tuple[str, int], dict[str, int]] = {}
        self._compacted: dict[tuple[str, int, int], bool] = {}
        self._definitions: dict[str, tuple[tuple[int, int] | None, Definition]] = {}
        self._reasons: dict[tuple[str, int, str], str | None] = {}
        """(transformer, version, fingerprint now) -> ``redefined`` (versions never change)."""

    def follow(self, context: RunContext) -> None:
        """Use ``context`` (a reloaded model) from the next tick on; jobs running now
        finish with the model they started with."""
        self._next_context = context

    def _switch_model(self) -> None:
        """The graph, plan, freshness and notify targets of the model ``follow`` gave."""
        context, self._next_context = self._next_context, None
        if context is None:
            return
        self.context = context
        self.graph = build_graph(context.index)
        self.applied, self.unapplied = _follow_applied_plan(context, self.graph)
        self.deliveries = _deliveries(context, self.graph)
        self.intervals = _freshness_intervals(
            self.graph, [*self.deliveries.values(), *_shared_needs(context, self.graph)])
        self.remote = {name: p.network for name, p in context.ecosystem.platforms.items()
                       if p.network}
        self._definitions.clear()  # inline SQL, columns and checks come from the model
        self._reasons.clear()
        self._retired.append(self.notifier)  # a pass may be using it: closed at the end
        self.notifier = Notifier(context, now=self.now, holder=self.holder)

    # --- deciding -------------------------------------------------------------------

    def due(self, job: Job, at: datetime, runs: _Runs | None = None,
            heads: dict[str, int | None] | None = None) -> str | None:
        """The trigger that makes ``job`` due at ``at``, or None.

        By default this reads the metadata DB and the store now. A tick passes what it
        read once for all jobs: ``runs`` (its ``LatestRuns``) and ``heads`` (the input
        heads read so far this tick: many jobs read the same inputs).
        """
        runs = runs or _AskTheDatabase(self.runs)
        if job.platform in self.remote and (job.network or self.remote[job.platform]) \
                not in self.agent_networks:
            return None  # no agent of its network is enrolled: nothing could run it
        latest = runs.last(job.id)
        if latest is not None and latest.status == "running" and \
                latest.lease_expires_at is not None and latest.lease_expires_at > at:
            return None  # it runs now, elsewhere (its job lease may end a moment earlier)
        if latest is not None and abandoned(latest):
            return "retry"  # its process died, and nothing ran it since
        if latest is not None and latest.status == "failed" and latest.ended_at is not None \
                and at - latest.ended_at < RETRY_FAILED_AFTER:
            return None  # it just failed: give the source or sink a moment
        if job.trigger not in MANUAL_TRIGGERS:
            base = latest.started_at if latest is not None else self.started_at
            upcoming: datetime = croniter(job.trigger, base).get_next(datetime)
            return "schedule" if upcoming <= at else None
        if job.trigger == "stream":
            every = timedelta(seconds=self._stream_seconds(job.dataset))
            # recorded as a schedule: runs keep the triggers the run history has always had
            return "schedule" if latest is None or at - latest.started_at >= every else None
        if job.trigger == "freshness":
            interval = self.intervals.get(job.id)
            if interval is None:
                return None
            if job.kind == "ingest" and self._reads_changes(job.dataset):
                interval = min(interval, CHANGES_EVERY)  # a change log: read it continuously
            last = runs.last_counted(job.id)
            return "freshness" if last is None or at - last.started_at >= interval else None
        if job.trigger == "on_change":
            if self._inputs_changed(job, runs, heads):
                return "on_change"
            if any(self._head(ref, heads) is None for ref in self._input_refs(job)):
                return None  # an input has nothing to read (yet)
            return "definition" if self.redefined(job, heads) is not None else None
        return None

    def _stream_seconds(self, ref: str | None) -> int:
        """How often a stream dataset's ingest runs: its ``batch: seconds``."""
        entry = self.context.index.datasets.get(ref or "")
        batch = entry.dataset.batch if entry is not None and not entry.is_transformer else None
        return batch.seconds if batch is not None else StreamBatch().seconds

    def _reads_changes(self, ref: str) -> bool:
        """Whether ingest ``ref`` reads a change log (``capture: cdc``, stream sources)."""
        from dataferry.connectors.changes import reads_changes

        entry = self.context.index.datasets.get(ref)
        return entry is not None and entry.source is not None and reads_changes(
            entry.source.kind, entry.dataset)

    def redefined(self, job: Job, known: dict[str, int | None] | None = None) -> str | None:
        """Why transform ``job`` is due although its inputs did not change: its latest
        version was computed by another definition ("SQL changed"); None otherwise."""
        if job.kind != "transform":
            return None
        output = self._head(job.dataset, known)
        if output is None:
            return None
        current = self._definition(job.dataset)
        key = (job.dataset, output, current.fingerprint)
        if key not in self._reasons:
            if len(self._reasons) > 100_000:
                self._reasons.clear()
            spec = self.context.index.datasets[job.dataset].spec
            assert isinstance(spec, Transformer)
            manifest = self.context.store.dataset(job.dataset).version(output).manifest
            self._reasons[key] = rebuild_reason(manifest, current, spec)
        return self._reasons[key]

    def _definition(self, ref: str) -> Definition:
        """The transformer's definition now. The model is loaded once, its files may
        change: the definition is computed again when its body file's size or time does."""
        entry = self.context.index.datasets[ref]
        spec = entry.spec
        assert isinstance(spec, Transformer)
        stamp = None if spec.sql is not None else _body_stamp(
            self.context.root / "teams" / entry.team, spec)
        cached = self._definitions.get(ref)
        if cached is None or cached[0] != stamp:
            cached = (stamp, transformer_definition(self.context.index, self.context.root, ref))
            self._definitions[ref] = cached
        return cached[1]

    def _inputs_changed(self, job: Job, runs: _Runs,
                        known: dict[str, int | None] | None) -> bool:
        heads = {}
        for ref in self._input_refs(job):
            head = self._head(ref, known)
            if head is None:
                return False  # nothing to read yet: its producer has not published
            heads[ref] = head
        if job.kind == "transform":
            output = self._head(job.dataset, known)
            if output is None:
                return True
            seen = self._lineage(job.dataset, output)
        else:
            last = runs.last_counted(job.id)
            if last is None:
                return True
            seen = {v.ref: v.version for v in last.versions_read}
        return any(seen.get(ref) != head and not self._same_rows(ref, seen.get(ref), head)
                   for ref, head in heads.items())

    def _head(self, ref: str, known: dict[str, int | None] | None) -> int | None:
        if known is None:
            return self.context.store.dataset(ref).head_number()
        if ref not in known:
            known[ref] = self.context.store.dataset(ref).head_number()
        return known[ref]

    def _same_rows(self, ref: str, seen: int | None, head: int) -> bool:
        """Whether ``head`` of ``ref`` only compacts the version a job last read (``ferry
        compact``: the same rows in other files), so the job has nothing new to read."""
        if seen is None or seen >= head:
            return False
        key = (ref, seen, head)
        if key not in self._compacted:
            if len(self._compacted) > 100_000:
                self._compacted.clear()
            self._compacted[key] = self.context.store.dataset(ref).same_rows(seen, head)
        return self._compacted[key]

    def _lineage(self, ref: str, number: int) -> dict[str, int]:
        """The input versions version ``number`` of ``ref`` was computed from (versions
        never change, so each is read once)."""
        key = (ref, number)
        if key not in self._lineages:
            if len(self._lineages) > 100_000:
                self._lineages.clear()
            manifest = self.context.store.dataset(ref).version(number).manifest
            self._lineages[key] = {str(i["ref"]): int(i["version"]) for i in manifest.lineage}
        return self._lineages[key]

    def _input_refs(self, job: Job) -> list[str]:
        return [self.graph.jobs[i].dataset for i in job.inputs if i in self.graph.jobs]

    # --- running --------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass: claim dead runs, start due jobs, update staleness."""
        self._switch_model()
        report = TickReport()
        at = self.now()
        for run in self.runs.expired_runs(at):
            if self.runs.mark_abandoned(run.id) and run.job_id in self.graph.jobs:
                report.abandoned.append(run.job_id)
        self._reap()
        self.latest.refresh()
        if self.remote:
            from dataferry.agent.registry import Agents

            self.agent_networks = Agents(self.context.metadata).networks()
        heads = self._heads()
        for job in self.graph.order(sorted(self.graph.jobs)):
            if job.id in self.running or self._waits_for_inputs(job) or (
                    self.once is not None and job.id in self.once):
                continue
            try:
                trigger = self.due(job, at, self.latest, heads)
            except FerryError as error:  # one dataset's trouble must not stop the others
                report.errors.append((job.id, describe_failure(job.id, error).public))
                continue
            if trigger is not None:
                self.running[job.id] = self.pool.submit(self._work, job, trigger,
                                                        self.context)
                report.started.append((job.id, trigger))
                if self.once is not None:
                    self.once.add(job.id)
        self._update_staleness(at, report)
        self._notify(report)
        return report

    def _heads(self) -> dict[str, int | None]:
        """Every dataset's head for this tick's decisions, as far as one listing of the
        store tells (a local store): each of the model's datasets, None for those with no
        version. For a store in a bucket, empty: ``_head`` asks about each input once,
        when a job first needs it."""
        listed = self.context.store.heads()
        if listed is None:
            return {}
        heads: dict[str, int | None] = dict.fromkeys(self.context.index.datasets)
        heads.update(listed)
        return heads

    def _notify(self, report: TickReport) -> None:
        """Send new events to the consumers' notify targets, in the background (a slow
        webhook must not hold up the jobs); report how the last pass went."""
        if not self.notifier.targets:
            return
        if self._notifying is not None and not self._notifying.done():
            return
        if self._notifying is not None:
            # .result(): a bug in the notifier should not pass silently
            self._report_notify(self._notifying.result(), report)
        self._notifying = self._notify_pool.submit(self.notifier.run_once)

    def _report_notify(self, passed: list[Progress], report: TickReport) -> None:
        for progress in passed:
            before = self.notify_errors.get(progress.target)
            if progress.last_error is not None and progress.last_error != before:
                report.notify_failed.append((progress.target, progress.last_error))
            elif progress.last_error is None and before is not None:
                report.notify_recovered.append(progress.target)
            self.notify_errors[progress.target] = progress.last_error

    def _waits_for_inputs(self, job: Job) -> bool:
        """A job whose producer is running now waits for its new version."""
        return any(i in self.running for i in job.inputs)

    def _reap(self) -> None:
        for job_id, future in list(self.running.items()):
            if future.done():
                del self.running[job_id]
                future.result()  # a bug in the scheduler itself should not pass silently

    def _work(self, job: Job, trigger: str, context: RunContext) -> JobResult | None:
        """Run ``job`` of ``context``'s model if its lease is ours and it is still due
        (checked in the DB)."""
        if not self.leases.acquire(job.id, self.holder, self.lease_seconds):
            return None  # another scheduler runs it now
        try:
            # What the tick read may be old: decide again against the database, under the
            # lease (a retry too: another scheduler may have retried it meanwhile).
            try:
                checked = self.due(job, self.now())
            except FerryError:
                return None  # the next tick asks again, and reports it
            if checked is None:
                return None  # it ran elsewhere meanwhile
            result = run_recorded(context, job, trigger=checked,  # type: ignore[arg-type]
                                  attempts=self.attempts, lease_seconds=self.lease_seconds,
                                  keep=lambda: self.leases.renew(job.id, self.holder,
                                                                 self.lease_seconds))
            if self.on_result is not None:
                self.on_result(result)
            return result
        finally:
            self.leases.release(job.id, self.holder)

    def wait(self) -> None:
        """Wait for the jobs started so far (and those they make due, one tick each)."""
        while self.running:
            for future in list(self.running.values()):
                future.result()
            self._reap()

    def run_until_idle(self, on_tick: Callable[[TickReport], None] | None = None) -> None:
        """Tick until nothing is due or running, each job at most once: ``ferry up --once``."""
        self.once = set()
        while True:
            report = self.tick()
            if on_tick is not None:
                on_tick(report)
            if not report.started and not self.running:
                final = TickReport()  # the events the last jobs announced, sent now
                if self._notifying is not None:
                    self._report_notify(self._notifying.result(), final)
                self._notifying = None
                if self.notifier.targets:
                    self._report_notify(self.notifier.run_once(), final)
                if on_tick is not None and (final.notify_failed or final.notify_recovered):
                    on_tick(final)
                return
            self.wait()

    def run_forever(self, tick_seconds: float = 5.0,
                    stop: threading.Event | None = None,
                    on_tick: Callable[[TickReport], None] | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            report = self.tick()
            if on_tick is not None:
                on_tick(report)
            stop.wait(tick_seconds)
        self.close()

    def close(self) -> None:
        """Stop sending events at once (what is left goes next time), then wait for the
        running jobs."""
        for notifier in (*self._retired, self.notifier):
            notifier.stop()
        self._notify_pool.shutdown(wait=True)
        self.pool.shutdown(wait=True)
        for notifier in (*self._retired, self.notifier):
            notifier.close()

    # --- freshness ------------------------------------------------------------------

    def _update_staleness(self, at: datetime, report: TickReport) -> None:
        """Mark deliveries stale whose data is older than their need's freshness, clear
        the marks of those fresh again; writes only what changed."""
        marks = {mark.job_id: mark for mark in self.staleness.stale()}
        for job_id, (limit, ingests) in self.deliveries.items():
            job = self.graph.jobs[job_id]
            as_of = self._data_as_of(job_id, ingests)
            if as_of is None:
                continue
            mark = marks.get(job_id)
            if at - as_of > limit:
                if mark is None or mark.data_as_of != as_of:
                    reason = (f"data is from {as_of:%Y-%m-%d %H:%M}Z, older than the "
                              f"freshness asked for ({limit})")
                    if self.staleness.mark(job_id, as_of, reason, job.dataset, job.consumer):
                        report.stale.append(job_id)
            elif mark is not None and self.staleness.clear(job_id):
                report.fresh.append(job_id)

    def _data_as_of(self, job_id: str, ingests: list[str]) -> datetime | None:
        """When the data a delivery holds was last confirmed current at its sources: the
        oldest of the upstream ingests' last good runs (None: never delivered)."""
        delivered = self.latest.last_counted(job_id)
        if delivered is None:
            return None
        moments = []
        for ingest in ingests:
            last = self.latest.last_counted(ingest)
            moments.append(last.started_at if last is not None else delivered.started_at)
        return min(moments) if moments else delivered.started_at


def _deliveries(context: RunContext, graph: Graph) -> dict[str, tuple[timedelta, list[str]]]:
    """Delivery job -> (the freshness its need asks for, the ingest jobs upstream)."""
    default = context.ecosystem.defaults.freshness
    out: dict[str, tuple[timedelta, list[str]]] = {}
    for job in graph.jobs.values():
        if job.kind != "deliver" or job.consumer is None or job.need is None:
            continue
        need = context.index.consumers[job.consumer][2].datasets[job.need]
        limit = timedelta(seconds=duration_seconds(need.freshness or default))
        out[job.id] = (limit, [u.id for u in graph.order([job.id]) if u.kind == "ingest"])
    return out


def _shared_needs(context: RunContext, graph: Graph) -> list[tuple[timedelta, list[str]]]:
    """(freshness, upstream ingest jobs) of each need of a ``kind: share`` consumer: it has
    no delivery to wait for or mark stale, but its freshness still paces the ingests."""
    default = context.ecosystem.defaults.freshness
    out: list[tuple[timedelta, list[str]]] = []
    for _, _, consumer in context.index.consumers.values():
        if not shared(consumer):
            continue
        for need in consumer.datasets:
            producer = graph.producer(need.ref)
            if producer is None:
                continue
            limit = timedelta(seconds=duration_seconds(need.freshness or default))
            out.append((limit, [u.id for u in graph.order([producer]) if u.kind == "ingest"]))
    return out


def _follow_applied_plan(context: RunContext, graph: Graph) -> tuple[int | None, list[str]]:
    """Keep only the jobs of the applied plan (``ferry apply``), with its triggers and
    platforms; returns the plan's id and the model's jobs it does not have yet. Without
    an applied plan the scheduler follows the model as it is."""
    applied = PlanHistory(context.metadata).applied_plan()
    if applied is None:
        return None, []
    planned = {job["id"]: job for job in applied.plan.get("jobs", [])}
    unapplied = sorted(set(graph.jobs) - set(planned))
    graph.jobs = {
        job_id: replace(job, trigger=str(planned[job_id].get("trigger") or job.trigger),
                        platform=str(planned[job_id].get("platform") or job.platform))
        for job_id, job in graph.jobs.items() if job_id in planned
    }
    return applied.id, unapplied


def _body_stamp(folder: Path, spec: Transformer) -> tuple[int, int] | None:
    """The modification time and size of a transformer's ``sql_file`` or Python module
    (None: inline SQL, or no file)."""
    if spec.sql_file is not None:
        path: Path | None = folder / spec.sql_file
    elif spec.python is not None:
        path = module_file(folder, spec.python.partition(":")[0])
    else:
        return None
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if stat is not None else None


def _freshness_intervals(graph: Graph, needs: list[tuple[timedelta, list[str]]]
                         ) -> dict[str, timedelta]:
    """Ingest job -> how often it runs: half the smallest freshness asked downstream."""
    out: dict[str, timedelta] = {}
    for limit, ingests in needs:
        for ingest in ingests:
            if graph.jobs[ingest].trigger == "freshness":
                out[ingest] = min(out.get(ingest, limit / 2), limit / 2)
    return out
