"""``python -m dataferry.cli``: the same as the ``ferry`` command."""

from dataferry.cli.main import run

run()
