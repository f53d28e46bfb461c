"""``--help`` of every ``ferry`` command reads as help: a flag is shown as the flag alone
(no ``<bool>`` as if it took a value) and no reStructuredText markup (````--x````)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import typer

from dataferry.cli.main import every_command
from tests.conftest import Result


def _commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, below in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(below, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(every_command())))


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


def test_each_command_registers_from_the_module_the_table_names() -> None:
    """``ferry NAME`` registers only the module ``COMMAND_MODULES`` gives for NAME: a
    command missing from the table (or under another module) would be unknown to it."""
    from importlib import import_module

    from dataferry.cli.main import COMMAND_MODULES

    for module, names in COMMAND_MODULES.items():
        alone = typer.Typer()
        import_module(f"dataferry.cli.{module}").register(alone)
        registered = [info.name for info in alone.registered_commands]
        registered += [info.typer_instance.info.name for info in alone.registered_groups
                       if info.typer_instance is not None]
        assert sorted(registered) == sorted(names), module
    every = {name for names in COMMAND_MODULES.values() for name in names}
    assert {path[0] for path in COMMANDS if len(path) == 1} == every


def test_a_command_runs_with_only_its_module_registered() -> None:
    """A fresh ``ferry run --help`` imports neither the store's nor the users' commands,
    and ``ferry --help`` still lists every command."""
    import subprocess
    import sys

    script = ("import sys\nfrom dataferry.cli.main import invoke\ncode = invoke(sys.argv[1:])\n"
              "print(sorted(m for m in sys.modules if m.startswith('dataferry.cli.')))")
    run_help = subprocess.run([sys.executable, "-c", script, "run", "--help"],
                              capture_output=True, text=True, check=True, timeout=60)
    assert "Run jobs now" in run_help.stdout
    assert "dataferry.cli.store_commands" not in run_help.stdout
    assert "dataferry.cli.users_commands" not in run_help.stdout
    for args in (["--help"], ["--help", "run"], ["--debug", "-h"]):
        everything = subprocess.run([sys.executable, "-c", script, *args],
                                    capture_output=True, text=True, check=True, timeout=60)
        for name in ("check", "publish", "serve", "agents", "share", "run"):
            assert f" {name} " in everything.stdout, (args, name)
