"""``ferry discover``: print a team file from a live database or files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from dataferry.cli.common import JsonOption, ModelOption, print_json
from dataferry.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("discover")(discover)


def discover(
    target: str = typer.Argument(
        ..., metavar="DSN|GLOB",
        help="postgresql://user@host/db, mysql://user@host/db, a SQLite or DuckDB file "
        "(sqlite:///shop.db, duckdb:///wh.duckdb) or a glob of files ('data/*.parquet')."),
    schema: str | None = typer.Option(
        None, "--schema", metavar="S",
        help="The schema (PostgreSQL, DuckDB) or database (MySQL) to read; default the "
        "connection's own."),
    tables: str | None = typer.Option(
        None, "--tables", metavar="a,b", help="Only these tables (default: every table and "
        "view)."),
    team: str | None = typer.Option(
        None, "--team", metavar="T", help="The team name (default: from the database name)."),
    zone: str | None = typer.Option(
        None, "--zone", metavar="Z", help="The team's zone (default: the model's first zone, else main)."),
    owner: str | None = typer.Option(
        None, "--owner", metavar="EMAIL", help="The team's owner (default: git's user.email)."),
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", help="Write the team file here instead of stdout."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print a team file (a source, a dataset per table with mapped types, keys and a
    suggested cursor) from a live database or files."""
    from dataferry.discover import discover as run_discover
    from dataferry.discover.target import name_of

    if team is not None and name_of(team, "team") != team:
        raise UsageError(f"--team {team!r} is not a team name (lower case letters, digits "
                         "and _, starting with a letter)")
    if json_out and out is not None:
        raise UsageError("give --json or --out, not both")
    root = _model_root(model)
    only = [t.strip() for t in tables.split(",") if t.strip()] if tables is not None else None
    found = run_discover(target, root, schema=schema, tables=only, team=team,
                         zone=zone or _first_zone(root), owner=owner or _git_email())
    if json_out:
        print_json(found.as_json())
        return
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(found.text, encoding="utf-8")
        typer.echo(f"wrote {out}: team {found.team}, {found.datasets} dataset(s)", err=True)
        if out.parent.parent.name == "teams" and out.parent.name != found.team:
            typer.echo(f"note: team {found.team}'s files belong in teams/{found.team}/ "
                       "(ferry check reports misplaced-definition); move it, or give --team "
                       f"{out.parent.name}", err=True)
    else:
        sys.stdout.write(found.text)
    for note in found.notes:
        typer.echo(f"note: {note}", err=True)


def _model_root(option: Path | None) -> Path | None:
    """The model directory paths are written relative to (None when there is none)."""
    from dataferry.cli.common import model_dir

    if option is not None:
        return model_dir(option)
    try:
        return model_dir(None)
    except UsageError:
        return None


def _first_zone(root: Path | None) -> str:
    from dataferry.model.yamlfile import YamlProblem, parse_yaml

    if root is None:
        return "main"
    try:  # YAML 1.2 as ferry reads it: a zone named no (Norway) stays "no"
        document = parse_yaml((root / "ferry.yaml").read_bytes()).value
    except (OSError, YamlProblem):
        return "main"
    zones = document.get("zones") if isinstance(document, dict) else None
    return str(next(iter(zones))) if isinstance(zones, dict) and zones else "main"


def _git_email() -> str:
    try:
        done = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True,
                              timeout=5, check=False)
    except OSError:
        return "owner@example.com"
    email = done.stdout.strip()
    return email if "@" in email else "owner@example.com"
