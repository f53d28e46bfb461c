"""Run commands: run (jobs now, in dependency order), up (the scheduler) and demo (the
whole idea, offline)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dataferry.cli.common import JsonOption, ModelOption, long_lived, model_dir, print_json
from dataferry.errors import UsageError

if TYPE_CHECKING:  # imported when a command runs, not for --help
    from dataferry.broker.graph import Job
    from dataferry.model.load import LoadedModel

AttemptsOption = typer.Option(
    3, "--attempts", min=1, metavar="N",
    help="Tries per job when errors are transient (with exponential backoff and jitter).")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("up")(up)
    app.command("demo")(demo)


def _context(model: Path | None) -> object:
    """The run context of a model that passes ``ferry check``."""
    from dataferry.engine.context import RunContext

    return RunContext.from_loaded(_checked_model(model, sql=True)[0])


def _checked_model(model: Path | None, *, sql: bool) -> tuple[LoadedModel, bool]:
    """The model, loaded and checked, and whether its SQL was checked (``sql=False``:
    all but the checks that parse or bind SQL, see ``_check_sql_of``, unless the
    model's cache has it wholly checked); raises on the first error.

    A model checked unchanged before comes from the cache (``model.cache``); one
    checked here is kept there (without ``sql``: as an entry without SQL, which only
    runs read). Without ``sql``, only a cached model without errors will do: one whose
    errors are in SQL of jobs not run here must not stop the run."""
    from dataferry.model import cache
    from dataferry.model.check import lint_model
    from dataferry.model.load import load_model

    root = model_dir(model)
    with long_lived():
        key = cache.model_key(root) if cache.enabled() else None
        found = cache.read_cached(key, sql=sql) if key is not None else None
        if found is not None and (sql or found[0].report.ok):
            loaded, sql = found
        else:
            loaded = load_model(root)
            lint_model(loaded, sql=sql)
            if key is not None:
                cache.write_checked(key, loaded, sql=sql)
    _refuse_errors(loaded)
    return loaded, sql


def _refuse_errors(loaded: LoadedModel) -> None:
    if loaded.ecosystem is None or not loaded.report.ok:
        errors = [f for f in loaded.report.sorted() if f.severity == "error"]
        first = errors[0].as_text() if errors else "ferry.yaml is not valid"
        raise UsageError(f"the model has {len(errors)} error(s) (first: {first}); run "
                         "`ferry check` and fix them before running")


def _check_sql_of(loaded: LoadedModel, jobs: Sequence[Job]) -> None:
    """Check the SQL of the consumers and transformers among ``jobs`` as ``ferry check``
    does (``where:``, the columns a transformer reads, binding its query). A run leaves
    out the others': sqlglot's import, and a second per thousand transformers, for jobs
    it does not run (``ferry check`` checks them all, in CI)."""
    from dataferry.model.check import check_sql, lint_model
    from dataferry.model.load import load_model

    refs = {job.dataset for job in jobs if job.kind == "transform"}
    refs |= {job.consumer for job in jobs if job.kind == "deliver" and job.consumer}
    if refs:
        check_sql(loaded, refs)
        if not loaded.report.ok:
            # From the cache, the model's findings have no positions (and sort apart):
            # the run refuses with what a run without the cache says, from the files.
            loaded = load_model(loaded.root)
            lint_model(loaded, sql=False)
            check_sql(loaded, refs)
        _refuse_errors(loaded)


def run(
    refs: list[str] = typer.Argument(None, metavar="[REF]...",
                                     help="Datasets (their ingest/transform) or consumers "
                                          "(their deliveries); default everything."),
    downstream: bool = typer.Option(False, "--downstream",
                                    help="Also run everything downstream of REF."),
    full: bool = typer.Option(False, "--full", help="Ignore cursors: read everything again; "
                              "deliveries reload their sinks in full, _ferry_loads included."),
    allow_delete: bool = typer.Option(
        False, "--allow-delete", help="Let snapshots and transforms remove more of a "
        "dataset's rows than its max_delete_ratio (default 0.5) allows."),
    attempts: int = AttemptsOption,
    agent_wait: str = typer.Option(
        "5m", "--agent-wait", metavar="DURATION",
        help="How long a job of a private network waits for an agent of it to take it "
             "(e.g. 30s, 5m) before it fails: waiting for an agent of NETWORK."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run jobs now, in dependency order: ingests, transforms, deliveries."""
    from dataferry.broker.graph import build_graph, select
    from dataferry.broker.runner import run_jobs
    from dataferry.cli.progress import JobProgress
    from dataferry.engine.context import RunContext
    from dataferry.model.spec import duration_seconds

    if not re.fullmatch(r"(\d+[smhdw])+", agent_wait) or not duration_seconds(agent_wait):
        raise UsageError(f"--agent-wait {agent_wait!r} is not a duration: write e.g. 30s or 5m")
    loaded, sql_checked = _checked_model(model, sql=False)
    context = RunContext.from_loaded(loaded)
    context.allow_delete = allow_delete
    context.agent_wait = duration_seconds(agent_wait)
    graph = build_graph(context.index)
    jobs = select(graph, context.index, refs or [], downstream=downstream)
    try:
        if not sql_checked:
            _check_sql_of(loaded, jobs)
        with JobProgress() as progress:
            results = run_jobs(context, jobs, full=full, progress=progress, trigger="manual",
                               attempts=attempts)
    finally:
        context.close()
    failed = [r for r in results if r.status == "failed"]
    if json_out:
        print_json([{"job": r.job.id, "status": r.status, "rows": r.rows, "version": r.version,
                     "seconds": round(r.seconds, 3), "message": r.message,
                     "warnings": r.warnings, "run": r.run_id} for r in results])
    else:
        _summary(results)
    for result in failed:
        typer.echo(f"error: {result.job.id} failed: {result.message}", err=True)
    raise typer.Exit(1 if failed else 0)


def _summary(results: Sequence[object]) -> None:
    from rich.console import Console
    from rich.table import Table

    from dataferry.broker.runner import JobResult

    table = Table("job", "status", "rows", "version", "time", "note", box=None, highlight=False)
    colors = {"succeeded": "green", "failed": "red", "skipped": "yellow", "unchanged": "dim"}
    for result in results:
        assert isinstance(result, JobResult)
        color = colors.get(result.status, "")
        table.add_row(result.job.id, f"[{color}]{result.status}[/{color}]", f"{result.rows:,}",
                      str(result.version or "-"), f"{result.seconds:.1f}s",
                      result.message if result.status != "failed" else "see below")
        for warning in result.warnings:
            table.add_row("", "[yellow]warning[/yellow]", "", "", "", warning)
    import sys

    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(table)


def up(
    workers: int = typer.Option(4, "--workers", min=1, help="Jobs that may run at once."),
    tick: float = typer.Option(5.0, "--tick", min=0.1, metavar="SECONDS",
                               help="How often to look for due jobs."),
    attempts: int = AttemptsOption,
    lease: float = typer.Option(
        300.0, "--lease", min=5.0, metavar="SECONDS",
        help="How long a job stays taken without a heartbeat: a scheduler killed while "
             "running it frees it after this long."),
    once: bool = typer.Option(False, "--once", help="Run what is due (and what that makes "
                                                    "due) until nothing is, then exit."),
    model: ModelOption = None,
) -> None:
    """Run the scheduler in the foreground: cron schedules, freshness, on_change triggers."""
    import signal
    import threading
    from datetime import UTC, datetime

    from dataferry.broker.runner import JobResult
    from dataferry.broker.scheduler import Scheduler, TickReport
    from dataferry.engine.context import RunContext

    context = _context(model)
    assert isinstance(context, RunContext)

    def say(text: str) -> None:
        typer.echo(f"{datetime.now(UTC):%H:%M:%S} {text}")

    def finished(result: JobResult) -> None:
        say(f"{result.job.id}: {result.status}"
            + (f" ({result.message})" if result.message else ""))

    def ticked(report: TickReport) -> None:
        for job_id in report.abandoned:
            say(f"{job_id}: its last run was abandoned (the process died); retrying")
        for job_id, trigger in report.started:
            say(f"{job_id}: started ({trigger})")
        for job_id in report.stale:
            say(f"{job_id}: STALE, its data is older than the consumer's freshness")
        for job_id in report.fresh:
            say(f"{job_id}: fresh again")
        for target, error in report.notify_failed:
            say(f"notify {target}: FAILED ({error}); its events wait and are retried")
        for target in report.notify_recovered:
            say(f"notify {target}: delivering again")
        for job_id, error in report.errors:
            say(f"{job_id}: cannot tell whether it is due ({error}); asking again next tick")

    scheduler = Scheduler(context, workers=workers, attempts=attempts, lease_seconds=lease,
                          on_result=finished)
    jobs = len(scheduler.graph.jobs)
    say(f"scheduler up: {jobs} jobs, {workers} workers, metadata {context.metadata_url}")
    if scheduler.applied is None:
        say("no plan applied yet: following the model as it is (`ferry apply` fixes the plan)")
    else:
        say(f"following applied plan {scheduler.applied}")
    for target, error in sorted(scheduler.notify_errors.items()):
        if error is not None:
            say(f"notify {target}: failing ({error}); its events wait and are retried")
    if scheduler.unapplied:
        say(f"{len(scheduler.unapplied)} job(s) of the model are not in the applied plan and "
            f"wait for `ferry apply`: {', '.join(scheduler.unapplied[:5])}"
            + (" ..." if len(scheduler.unapplied) > 5 else ""))
    try:
        if once:
            scheduler.run_until_idle(ticked)
            scheduler.close()
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            scheduler.run_forever(tick, stop, ticked)
        except KeyboardInterrupt:
            say("stopping: waiting for the running jobs to end")
            stop.set()
            scheduler.close()
    finally:
        context.close()


def demo(
    directory: Path | None = typer.Argument(None, help="Where to create it (default: a new "
                                                       "temporary directory)."),
    scale: int = typer.Option(200, "--scale", min=1,
                              help="Size of the generated shop (200: ~240,000 rows)."),
) -> None:
    """Create the example ecosystem, run it end to end twice, verify it, show where to look."""
    from dataferry.cli.demo import run_demo

    raise typer.Exit(run_demo(directory, scale))
