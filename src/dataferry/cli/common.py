"""Options and helpers every command shares."""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from dataferry.errors import UsageError

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", metavar="DIR",
        help="The model directory (default: the nearest directory holding ferry.yaml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def model_dir(option: Path | None) -> Path:
    """The model directory from ``--model`` or by searching upwards from the cwd."""
    from dataferry.model.load import find_model_dir

    if option is None:
        return find_model_dir()
    if not option.is_dir():
        raise UsageError(f"model directory {option} does not exist")
    if not (option / "ferry.yaml").is_file():
        raise UsageError(f"{option} has no ferry.yaml; run `ferry init {option}` to create a model")
    return option


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """Around loading and checking the model in a command: the cyclic garbage collector
    pauses while it runs and what it made is then frozen out of the collector's reach.

    A model makes millions of objects that live as long as the command and hold no
    cycles. Otherwise, once collecting resumes, the next collections walk them all (the
    youngest generation first, as they were never collected), and every later full one
    walks them again: at 10,000 datasets about a second of ``ferry plan``'s CPU, most
    of its planning. ``gc.freeze`` also keeps them out of the collection at exit."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """``rows`` under a header row, in aligned columns (what every list command prints)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=None, pad_edge=False, highlight=False)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # a cell's [brackets] are no markup
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(table)
