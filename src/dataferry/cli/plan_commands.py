"""Plan commands: plan (the job graph and what changed) and apply (record it)."""

from __future__ import annotations

from typing import Any

import typer

from dataferry.cli.common import JsonOption, ModelOption, long_lived, print_json


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("apply")(apply)


def _planned(model: Any) -> tuple[Any, dict[str, Any], Any]:
    """The run context, the plan against the applied one, and the applied plan (or None)."""
    from dataferry.broker.plan import plan_against_applied
    from dataferry.cli.run_commands import _context
    from dataferry.engine.context import RunContext

    context = _context(model)
    assert isinstance(context, RunContext)
    with long_lived():  # a job graph and a document of ~5 objects a job, and no garbage
        document, applied = plan_against_applied(context)
    return context, document, applied


def plan(model: ModelOption = None, json_out: JsonOption = False) -> None:
    """The pipeline graph: every job, where it runs and why, and what changed since the
    last `ferry apply`."""
    _, document, _ = _planned(model)
    if json_out:
        print_json(document)
        return
    _print_plan(document)


def apply(
    model: ModelOption = None,
    by: str | None = typer.Option(None, "--by", metavar="EMAIL",
                                  help="Who applies it (recorded with the plan)."),
) -> None:
    """Record the plan as the one the scheduler follows (`ferry up`, `ferry serve`)."""
    from dataferry.broker.plan import plan_hash
    from dataferry.engine.changes import release_unused
    from dataferry.metadata import PlanHistory

    context, document, _ = _planned(model)
    metadata = context.metadata
    # Before anything else: a dataset that stopped reading changes frees its slot even
    # when the plan itself is unchanged.
    for line in release_unused(context):
        typer.echo(line)
    changes = document["changes"]
    if not any(changes.values()):
        typer.echo(f"nothing to apply: the applied plan is current "
                   f"({len(document['jobs'])} jobs)")
        return
    jobs = [{k: v for k, v in job.items() if k not in ("definition", "rebuild")}
            for job in document["jobs"]]  # the store's state, not the plan's
    number = PlanHistory(metadata).save_plan({"jobs": jobs}, plan_hash(jobs), by)
    typer.echo(f"applied plan {number}: {len(document['jobs'])} jobs "
               f"({len(changes['add'])} added, {len(changes['change'])} changed, "
               f"{len(changes['remove'])} removed)")
    if changes["remove"]:
        typer.echo("removed jobs stop running; data already delivered stays in the sinks")


def _print_plan(document: dict[str, Any]) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    changes = document["changes"]
    marks = {**dict.fromkeys(changes["add"], "+"), **dict.fromkeys(changes["change"], "~")}
    table = Table("", "job", "platform", "trigger", "why", box=None, highlight=False)
    for job in document["jobs"]:
        table.add_row(marks.get(job["id"], ""), job["id"], job["platform"], job["trigger"],
                      job["why"])
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    console.print(table)
    for share in document.get("shared", []):
        console.print(f"{share['consumer']}  served by Delta Sharing, no delivery job: "
                      f"{', '.join(share['datasets'])}", markup=False)
    for job_id in changes["remove"]:
        console.print(f"- {job_id}  (removed: stops running; delivered data stays)")
    for job in document["jobs"]:
        if job.get("rebuild") and job["kind"] == "ingest":
            console.print(f"{job['dataset']}  rebuild: {job['rebuild']} (its next ingest "
                          "publishes the declared schema; `ferry run "
                          f"{job['dataset']} --full` re-reads an incremental one whole)",
                          markup=False)
        elif job.get("rebuild"):
            console.print(f"{job['dataset']}  rebuild: {job['rebuild']} (its next run "
                          "recomputes it)", markup=False)
        elif job.get("definition") == "not recorded":
            console.print(f"{job['dataset']}  definition not recorded (its latest version "
                          "predates fingerprints; its next version records it)")
    counts = {kind: len(ids) for kind, ids in changes.items()}
    kinds = {kind: sum(1 for j in document["jobs"] if j["kind"] == kind)
             for kind in ("ingest", "transform", "deliver")}
    console.print(f"{len(document['jobs'])} jobs: {kinds['ingest']} ingest + "
                  f"{kinds['transform']} transform + {kinds['deliver']} deliver; since the "
                  f"applied plan: {counts['add']} to add, {counts['change']} to change, "
                  f"{counts['remove']} to remove" + ("" if any(counts.values()) else
                                                     " (up to date)"))
