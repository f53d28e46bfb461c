"""Model commands: check, init, codeowners, schema, export-model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from dataferry.cli.common import JsonOption, ModelOption, long_lived, model_dir, print_json
from dataferry.errors import ModelError, UsageError


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("init")(init)
    app.command("codeowners")(codeowners)
    app.command("schema")(schema)
    app.command("export-model")(export_model)


def check(
    model: ModelOption = None,
    json_out: JsonOption = False,
    base: str | None = typer.Option(
        None, "--base", metavar="REF",
        help="Git ref to compare with: backwards compatibility and the teams whose files "
        "changed.",
    ),
    author: str | None = typer.Option(
        None, "--author", metavar="EMAIL",
        help="With --base: the change's author; files of teams they do not own are "
        "unauthorized-change.",
    ),
    connect: bool = typer.Option(
        False, "--connect", help="Also connect to every reachable source and sink."
    ),
) -> None:
    """Validate the model; exit 1 on any error (warnings are allowed)."""
    from dataferry.model import cache
    from dataferry.model.check import check_model

    if author is not None and base is None:
        raise UsageError("--author needs --base REF (the ref to compare with)")
    root = model_dir(model)
    # Without --base and --connect, what it checked is what `ferry plan` & co. check:
    # kept for them (model.cache), under the key of the files as they were before loading.
    key = cache.model_key(root) if cache.enabled() and base is None and not connect else None
    with long_lived():
        result = check_model(root, base=base, author=author, connect=connect)
    if json_out:
        payload: dict[str, object] = {
            "ok": result.ok,
            "findings": [f.as_json() for f in result.findings],
            "errors": result.errors,
            "warnings": result.warnings,
        }
        if result.changed_teams is not None:
            payload["changed_teams"] = result.changed_teams
            payload["changed_files"] = result.changed_files
        print_json(payload)
    else:
        _print_findings(result)
    if key is not None:
        sys.stdout.flush()  # the findings first; then the cache, for the next command
        cache.write_checked(key, result.loaded)
    raise typer.Exit(0 if result.ok else 1)


def _print_findings(result: object) -> None:
    from rich.console import Console
    from rich.markup import escape

    from dataferry.model.check import CheckResult

    assert isinstance(result, CheckResult)
    console = Console(highlight=False, soft_wrap=True)
    colors = {"error": "red", "warning": "yellow"}
    for finding in result.findings:
        where = f"{finding.file}:{finding.line}:{finding.column}"
        color = colors[finding.severity]
        console.print(
            f"{escape(where)}: [{color}]{finding.severity}{escape(f'[{finding.code}]')}[/{color}]: "
            f"{escape(finding.message)}"
        )
    if result.changed_teams is not None:
        teams = ", ".join(result.changed_teams) or "none"
        console.print(f"teams changed: {teams}")
    eco = result.loaded.ecosystem
    size = ""
    if eco is not None:
        datasets = sum(
            len(s.datasets) for t in eco.teams.values() for s in t.sources.values()
        ) + sum(len(t.transformers) for t in eco.teams.values())
        consumers = sum(len(t.consumers) for t in eco.teams.values())
        size = (f" ({_count(len(eco.teams), 'team')}, {_count(datasets, 'dataset')}, "
                f"{_count(consumers, 'consumer')})")
    if result.ok:
        console.print(f"[green]ok[/green]: the model is valid{size}, "
                      f"{result.warnings} warning(s)")
    else:
        console.print(f"[red]failed[/red]: {result.errors} error(s), {result.warnings} "
                      f"warning(s){size}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def init(
    directory: Path | None = typer.Argument(None, help="Where to create the model (default .)."),
    model: ModelOption = None,
    example: bool = typer.Option(
        False, "--example", help="A small working ecosystem over a bundled SQLite source."
    ),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory."),
) -> None:
    """Scaffold a model repository (--example: a working example ecosystem)."""
    if directory is not None and model is not None and directory != model:
        raise UsageError("give the directory once: as DIR or as --model DIR")
    directory = directory or model or Path(".")
    from dataferry.model.scaffold import create_example, create_model

    created = create_example(directory, force=force) if example else create_model(
        directory, force=force
    )
    typer.echo(f"created a model in {directory} ({len(created)} files)")
    typer.echo(f"next: ferry check --model {directory}")


def codeowners(
    model: ModelOption = None,
    admins_for_root: bool = typer.Option(
        True, help="Give ferry.yaml and other root files to the ecosystem's admins."
    ),
) -> None:
    """Print a CODEOWNERS file from the teams' owners (and the admins for ferry.yaml)."""
    from dataferry.model.codeowners import codeowners_text
    from dataferry.model.load import load_model

    loaded = load_model(model_dir(model))
    if loaded.ecosystem is None:
        raise ModelError("ferry.yaml is not valid; run `ferry check` to see why")
    sys.stdout.write(codeowners_text(loaded, admins_for_root=admins_for_root))


def schema(
    model: ModelOption = None,
    kind: str = typer.Option(
        "all", "--kind", help="all (either file), ecosystem (ferry.yaml) or team."
    ),
) -> None:
    """Print the JSON Schema of the model's YAML files (for editors; see docs/editors.md).

    The schema is the same for every model; --model is accepted and ignored.
    """
    from dataferry.model.jsonschema import model_json_schema

    if kind not in ("all", "ecosystem", "team"):
        raise UsageError(f"--kind must be all, ecosystem or team, not {kind!r}")
    print_json(model_json_schema(kind))


def export_model(
    model: ModelOption = None,
    yaml_out: bool = typer.Option(True, "--yaml/--json", help="Output format."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the files (ferry.yaml, teams/...) into this directory."
    ),
) -> None:
    """Print the loaded model (YAML and Python DSL files) as YAML."""
    from dataferry.model.check import lint_model
    from dataferry.model.export import export_stream, write_model
    from dataferry.model.load import load_model

    loaded = load_model(model_dir(model))
    lint_model(loaded)
    if loaded.ecosystem is None or not loaded.report.ok:
        errors = [f for f in loaded.report.sorted() if f.severity == "error"]
        first = errors[0].as_text() if errors else "ferry.yaml is not valid"
        raise _model_invalid(len(errors), first)
    if out is not None:
        written = write_model(loaded.ecosystem, out, loaded.root)
        typer.echo(f"wrote {len(written)} files to {out}", err=True)
        return
    if yaml_out:
        sys.stdout.write(export_stream(loaded.ecosystem))
    else:
        print_json(json.loads(loaded.ecosystem.model_dump_json(by_alias=True)))


def _model_invalid(errors: int, first: str) -> Exception:
    from dataferry.errors import ModelError

    return ModelError(
        f"the model has {errors} error(s) (first: {first}); fix them (see `ferry check`) "
        "before exporting"
    )
