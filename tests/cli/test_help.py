"""``--help`` of every ``ferry`` command reads as help: a flag is shown as the flag alone
(no ``<bool>`` as if it took a value) and no reStructuredText markup (````--x````)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import typer

from dataferry.cli.main import app
from tests.conftest import Result


def _commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, below in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(below, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_walked() -> None:
    assert {("check",), ("users", "list"), ("tokens", "create"), ()} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "ferry")
def test_help_shows_flags_plainly(ferry: Callable[..., Result], path: tuple[str, ...],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    result = ferry(*path, "--help")
    assert result.code == 0, result
    assert "--help" in result.out
    assert "<bool>" not in result.out, result.out
    assert "``" not in result.out, result.out


def test_a_flag_has_no_type_and_a_value_option_keeps_its_metavar(
        ferry: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    lines = ferry("check", "--help").out.splitlines()
    [json_line] = [line for line in lines if "--json" in line]
    assert json_line.split("--json", 1)[1].split()[0] == "Print"
    [model_line] = [line for line in lines if "--model" in line]
    assert " DIR " in model_line


def test_a_paragraph_of_help_flows_as_one(ferry: Callable[..., Result],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A docstring's line breaks are not kept inside a paragraph: rich wrapped each line
    again, so ``ferry gc --help`` said "...or a running delivery or transform reads" and
    "(per the run history), are kept" on lines of their own."""
    monkeypatch.setenv("COLUMNS", "200")
    result = ferry("gc", "--help")
    assert "or transform reads (per the run history), are kept unless --force" in result.out


def test_flowing_keeps_list_items_and_indented_lines() -> None:
    from dataferry.cli.helptext import flowing

    text = "One sentence\nwrapped.\n\n- an item\n- another\n  continued\n\nExample:\n    ferry x"
    assert flowing(text) == ("One sentence wrapped.\n\n- an item\n- another\n  continued\n\n"
                             "Example:\n    ferry x")
