"""How ``ferry --help`` (and every command's) shows options.

Typer 0.2x writes each option's Python type next to it; for a flag that is ``<bool>``,
which reads as if the flag took a value (``--json <bool>``). ``FerryGroup``, the class of
the ``ferry`` app, shows a flag as the flag alone, in its own help and in the help of
every command below it, including commands registered later by any module.

Typer's rich help also keeps a docstring's line breaks, and then wraps each line to the
terminal again, so a paragraph came out broken in odd places. ``FerryGroup`` joins each
paragraph's lines first; list items and indented lines keep their own line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typer.core import TyperGroup


class FerryGroup(TyperGroup):
    """The ``ferry`` command group; see the module docstring."""

    def get_params(self, ctx: Any) -> Any:
        return plain_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_below(command, ctx)
        return command


def plain_flags(params: Iterable[Any]) -> list[Any]:
    """``params`` with every flag (``--json``, ``--help``) shown without a type."""
    params = list(params)
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def flowing(text: str) -> str:
    """``text`` with each paragraph's lines joined (a line that starts a list item, or is
    indented, starts a new line)."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and line.strip() and not line.startswith((" ", "\t", "-", "*", "\b")):
                lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _plain_below(command: Any, ctx: Any) -> None:
    plain_flags(command.get_params(ctx))  # get_params also makes its --help option
    if command.help:
        command.help = flowing(command.help)
    for below in getattr(command, "commands", {}).values():
        _plain_below(below, ctx)
