"""The ``ferry`` command: one typer app, one module per command group (see below)."""

from __future__ import annotations

import gc
import os
import sys
from importlib import import_module

# Importing the command groups (pyarrow, duckdb, pydantic models) makes hundreds of
# thousands of long-lived objects and no garbage: the cyclic collector walking them again
# and again was a third of ``ferry``'s start-up.
_collecting = gc.isenabled()
gc.disable()

# Arrow's default allocator, mimalloc, gives freed pages back and faults fresh zeroed ones
# in for the next batch: the wide table of bench/postgres_types.py spent ~0.3 s more CPU
# (most of it in the kernel) and 40 MB more memory than with the C library's malloc. Read
# by pyarrow when it loads; a value set by the user wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
# numpy's OpenBLAS starts a thread per core when it loads, and they spin while waiting:
# 1% of a PostgreSQL ingest's CPU on 2 cores and ~0.03 s of start-up; dataferry does no
# linear algebra. A value set by the user wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402

from dataferry import __version__  # noqa: E402
from dataferry.cli.helptext import FerryGroup  # noqa: E402
from dataferry.errors import FerryError  # noqa: E402

app = typer.Typer(
    name="ferry",
    cls=FerryGroup,
    help="dataferry: declare data products as code, check them, move and verify the data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from dataferry.connectors.postgres.driver import installed

        typer.echo(f"ferry {__version__}")
        typer.echo(installed().describe())  # an unoptimized ADBC build reads ~3x slower
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """dataferry: declare data products as code, check them, move and verify the data."""
    if debug:
        os.environ["FERRY_DEBUG"] = "1"


COMMAND_MODULES = {
    "model_commands": ("check", "init", "codeowners", "schema", "export-model"),
    "discover_commands": ("discover",),
    "plan_commands": ("plan", "apply"),
    "replication_commands": ("clone", "pull"),
    "run_commands": ("run", "up", "demo"),
    "runs_commands": ("runs",),
    "share_commands": ("share",),
    "store_commands": ("publish", "datasets", "log", "show", "export", "diff", "verify", "gc",
                       "compact", "keys"),
    "users_commands": ("users", "tokens", "audit", "serve"),
    "agent_commands": ("agents", "agent"),
}
"""The modules of ``dataferry.cli`` that register commands, in the order ``ferry --help``
lists them, and the names of the commands (or command groups) each registers."""
_registered: set[str] = set()


def _register(command: str | None = None) -> None:
    """Register the commands of the module that has ``command``; every module's when
    ``command`` is None or no module's (``ferry --help``, a mistyped name). A command
    needs only its own module: importing them all (the store, the users, the agents)
    and having typer build every command's options cost ``ferry run`` 0.02 s of CPU."""
    modules = [module for module, names in COMMAND_MODULES.items() if command in names]
    collecting = gc.isenabled()
    gc.disable()  # see above: these imports make long-lived objects and no garbage
    try:
        for module in modules or COMMAND_MODULES:
            if module not in _registered:
                import_module(f"dataferry.cli.{module}").register(app)
                _registered.add(module)
    finally:
        if collecting:
            gc.enable()


if _collecting:
    gc.enable()


def every_command() -> typer.Typer:
    """The ``ferry`` app with every command registered, as ``ferry --help`` shows it
    (a command's own run registers only its module's)."""
    _register()
    return app


def _command_of(args: list[str]) -> str | None:
    """The command ``args`` name: the first that is no option (``ferry``'s own options,
    ``--debug``, ``--version`` and ``--help``, take no value); None for ``ferry``'s own
    help (``ferry --help run`` lists every command)."""
    for arg in args:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def invoke(argv: list[str] | None = None) -> int:
    """Run ``ferry`` with ``argv``; returns the exit code. A ``FerryError`` is one line."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("FERRY_DEBUG") == "1"
    _register(_command_of(args))
    try:
        app(args=args, prog_name="ferry", standalone_mode=True)
    except SystemExit as exc:  # typer/click end every run this way, with the exit code
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FerryError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # not ours to expect (a full disk, a bug): one line all the same
        if debug:
            raise
        typer.echo(f"error: {unexpected(exc)}", err=True)
        return 1
    return 0


def unexpected(exc: Exception) -> str:
    """One line for an error no part of dataferry turned into a ``FerryError``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where} (rerun with --debug for the traceback)"
    text = " ".join(str(exc).split())
    if any(full in text for full in ("database or disk is full", "No space left on device")):
        return (f"no space left on the device ({type(exc).__name__}): make room where the "
                "store or the metadata database lives and run again (rerun with --debug for "
                "the traceback)")
    if len(text) > 300:
        text = text[:300] + "..."
    return (f"internal error {type(exc).__name__}: {text} (a bug, or a failure dataferry "
            "does not know yet: rerun with --debug and report the traceback)")


def run() -> None:
    """Console-script entry point."""
    # The modules a command imports on first use (SQLAlchemy, ADBC, deltalake) are
    # long-lived objects too, and data moves in Arrow buffers that reference counting frees:
    # collect rarely. At exit, skip the last collection over everything (a tenth of a run).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    code = invoke()
    gc.freeze()
    sys.exit(code)
