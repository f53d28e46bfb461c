"""``ferry runs``: the run history the runner records in the metadata DB, newest first.

The list shows each run's public error summary; ``ferry runs ID`` also shows the detail
(the full error text, log lines in full, failed checks' example rows), which may hold row
values: it is for the operator on the host, who holds the store and the metadata DB.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dataferry.cli.common import JsonOption, ModelOption, model_dir, print_json
from dataferry.errors import FerryError, UsageError

if TYPE_CHECKING:
    from dataferry.metadata import ErrorDetail, RunDetail, RunHistory
    from dataferry.metadata.runs import Run

STATUS_COLORS = {"succeeded": "green", "failed": "red", "skipped": "yellow",
                 "unchanged": "dim", "running": "cyan", "queued": "cyan"}


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)


def runs(
    run_id: int | None = typer.Argument(None, metavar="[ID]",
                                        help="Show this run with its log lines."),
    failed: bool = typer.Option(False, "--failed", help="Only failed runs."),
    limit: int = typer.Option(50, "--limit", min=1, metavar="N",
                              help="Show at most N runs (newest first)."),
    job: str | None = typer.Option(None, "--job", metavar="ID",
                                   help="Only the runs of this job, e.g. ingest:shop.orders."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run history: every job attempt `ferry run` made, with status, rows and error."""
    history = _history(model)
    if history is None:  # nothing ever ran: do not create the database just to say so
        if run_id is not None:
            raise _no_such_run(run_id)
        _print_runs([], json_out)
        return
    try:
        if run_id is not None:
            found = _detail(history, run_id)
            _print_detail(found, history.error_detail(run_id), json_out)
        else:
            _print_runs(history.list_runs(limit=limit, failed_only=failed, job_id=job),
                        json_out)
    finally:
        history.db.close()


def _history(model: Any) -> RunHistory | None:
    """The model's run history, or None when its SQLite database does not exist yet."""
    from sqlalchemy.engine import make_url

    from dataferry.metadata import RunHistory, metadata_url, open_metadata
    from dataferry.model.load import load_model
    from dataferry.store.store import Store

    loaded = load_model(model_dir(model))
    if loaded.ecosystem is None:
        raise UsageError("ferry.yaml is not valid; run `ferry check` to see why")
    store = Store.for_model(loaded.root, loaded.ecosystem)
    url = metadata_url(store.home, loaded.ecosystem.metadata, root=loaded.root)
    parsed = make_url(url)
    database = parsed.database
    if (parsed.get_backend_name() == "sqlite" and database and database != ":memory:"
            and not Path(database).is_file()):
        return None
    return RunHistory(open_metadata(url))


def _detail(history: RunHistory, run_id: int) -> RunDetail:
    run = history.get_run(run_id)
    if run is None:
        raise _no_such_run(run_id)
    return run


def _no_such_run(run_id: int) -> FerryError:
    return FerryError(f"there is no run {run_id}; `ferry runs` lists the recorded runs")


def _iso(moment: datetime | None) -> str | None:
    """UTC as ISO 8601 with a ``Z``, the format manifests use for ``created_at``."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_json(run: Run) -> dict[str, Any]:
    """One run as ``--json`` prints it (CLI.md: id, job, status, started_at, ended_at,
    rows, error; the rest is more detail)."""
    return {
        "id": run.id, "job": run.job_id, "kind": run.job_kind, "trigger": run.trigger,
        "status": run.status, "attempt": run.attempt,
        "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at),
        "seconds": None if run.seconds is None else round(run.seconds, 3),
        "rows": run.rows_out, "rows_in": run.rows_in, "rows_out": run.rows_out,
        "versions_read": [{"ref": v.ref, "version": v.version} for v in run.versions_read],
        "versions_written": [{"ref": v.ref, "version": v.version}
                             for v in run.versions_written],
        "error": run.error, "worker": run.worker,
    }


def _print_runs(found: list[Run], json_out: bool) -> None:
    if json_out:
        print_json([run_json(r) for r in found])
        return
    if not found:
        typer.echo("no runs recorded yet (`ferry run` records every job it runs)")
        return
    from rich.table import Table

    table = Table("id", "job", "status", "attempt", "started", "duration", "rows", "error",
                  box=None, highlight=False)
    for run in found:
        table.add_row(str(run.id), run.job_id, _status(run.status), str(run.attempt),
                      _when(run.started_at), _duration(run.seconds), _rows(run),
                      _one_line(run.error or ""))
    _console().print(table)


def _print_detail(run: RunDetail, recorded: ErrorDetail | None, json_out: bool) -> None:
    """The run in full: on the host, its detail too (see the module)."""
    detail = recorded.detail if recorded is not None else None
    checks = list(recorded.checks) if recorded is not None else []
    if json_out:
        print_json({**run_json(run), "detail": detail, "checks": checks, "log": [
            {"at": _iso(line.at), "level": line.level, "message": line.detail or line.message}
            for line in run.log]})
        return
    console = _console()
    fields = [
        ("job", f"{run.job_id} ({run.job_kind})"),
        ("status", _status(run.status)),
        ("attempt", str(run.attempt)),
        ("trigger", run.trigger),
        ("worker", run.worker),
        ("started", _when(run.started_at)),
        ("ended", _when(run.ended_at)),
        ("duration", _duration(run.seconds)),
        ("rows", f"{run.rows_in:,} in, {run.rows_out:,} out"),
        ("read", _versions(run.versions_read)),
        ("written", _versions(run.versions_written)),
    ]
    console.print(f"run {run.id}")
    for name, value in fields:
        console.print(f"  {name:<9}{value}", highlight=False)
    if run.error:
        console.print(f"  {'error':<9}[red]{_escape(run.error)}[/red]", highlight=False)
    if detail:
        console.print(f"  {'detail':<9}{_escape(detail)}", highlight=False)
    for check in checks:
        console.print(f"  {'check':<9}{_escape(str(check.get('summary') or ''))}",
                      highlight=False)
        for example in check.get("examples") or []:
            shown = ", ".join(f"{k}={v}" for k, v in example.items())
            console.print(f"  {'':<9}  e.g. {_escape(shown)}", highlight=False)
    console.print("log:" if run.log else "log: (empty)")
    for line in run.log:
        console.print(f"  {_when(line.at)} {line.level:<7} {_escape(line.detail or line.message)}",
                      highlight=False)


def _console() -> Any:
    """A console that does not wrap long lines when output is piped (tests, grep)."""
    import sys

    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _status(status: str) -> str:
    color = STATUS_COLORS.get(status, "")
    return f"[{color}]{status}[/{color}]" if color else status


def _when(moment: datetime | None) -> str:
    text = _iso(moment)
    return "-" if text is None else text[:19].replace("T", " ") + "Z"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _rows(run: Run) -> str:
    if not (run.rows_in or run.rows_out):
        return "-"
    return f"{run.rows_in:,} → {run.rows_out:,}"


def _versions(versions: tuple[Any, ...]) -> str:
    return ", ".join(f"{v.ref}@{v.version}" for v in versions) or "-"


def _one_line(text: str, width: int = 80) -> str:
    """The error's first line, shortened: the table stays readable; `ferry runs ID` has it all."""
    line = " ".join(text.split())
    shortened = line if len(line) <= width else line[: width - 1] + "…"
    return _escape(shortened)
