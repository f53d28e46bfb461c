"""How ``ferry --help`` (and every command's) shows options.

Typer 0.2x writes each option's Python type next to it; for a flag that is ``<bool>``,
which reads as if the flag took a value (``--json <bool>``). ``FerryGroup``, the class of
the ``ferry`` app, shows a flag as the flag alone, in its own help and in the help of
every command below it, including commands registered later by any module.
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


def _plain_below(command: Any, ctx: Any) -> None:
    plain_flags(command.get_params(ctx))  # get_params also makes its --help option
    for below in getattr(command, "commands", {}).values():
        _plain_below(below, ctx)
