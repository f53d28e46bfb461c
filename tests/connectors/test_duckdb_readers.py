"""Other DuckDB releases open the files the DuckDB sink writes (issue 14): the oldest one
we support (1.1.0: DuckDB 1.0.0 reads the storage format but fails on
the index of `_ferry_loads`'s primary key) and the newest 1.x release with its CLI,
each in a virtual environment of its own (``tests/outside_tools.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.connectors.embedded import all_types_delivery, first, make_sink
from tests.outside_tools import run_tool, tool_venv

OLDEST, NEWEST_1X = "1.1.0", "1.5.6"

_TEXT = """
def text(con):
    # Every value as DuckDB's text, list items one by one (list rendering changed in 2.0).
    columns = con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                          "WHERE table_name = 'all_types' ORDER BY column_index").fetchall()
    values = ", ".join(f"[CAST(x AS VARCHAR) FOR x IN {n}]" if t.endswith("[]")
                       else f"CAST({n} AS VARCHAR)" for n, t in columns)
    rows = con.execute(f"SELECT {values} FROM all_types ORDER BY id").fetchall()
    loads = con.execute("SELECT dataset, version FROM _ferry_loads ORDER BY 1").fetchall()
    return {"types": [list(c) for c in columns], "rows": [list(r) for r in rows],
            "loads": [list(r) for r in loads]}
"""

_READ = _TEXT + """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET TimeZone = 'UTC'")
print(json.dumps({"version": duckdb.__version__, **text(con)}))
"""


def _seen(path: Path) -> Any:
    """What our own DuckDB sees in the file, in the reader script's terms."""
    space: dict[str, Any] = {}
    exec(_TEXT, space)
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return space["text"](con)
    finally:
        con.close()


def _storage(path: Path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tags = con.execute("SELECT tags FROM duckdb_databases() "
                           "WHERE database_name = current_database()").fetchall()[0][0]
        return str(tags["storage_version"])
    finally:
        con.close()


def _deliver_twice(root: Path, spec: dict[str, object]) -> Path:
    """Every type, then a second delivery into the existing file (it reopens it)."""
    sink = make_sink(spec, root)
    assert sink.deliver(all_types_delivery()) == 3
    assert sink.deliver(first("merge")) == 3
    return root / str(spec["path"])


@pytest.mark.parametrize("release", [OLDEST, NEWEST_1X])
def test_older_duckdb_releases_open_the_sink_file(tmp_path: Path, release: str) -> None:
    path = _deliver_twice(tmp_path, {"kind": "duckdb", "path": "out/reporting.duckdb"})
    assert _storage(path) == "v1.0.0+"
    python = tool_venv(f"duckdb-{release}", [f"duckdb=={release}"]) / "python"
    script = tmp_path / "read.py"
    script.write_text(_READ)
    seen = json.loads(run_tool(python, str(script), str(path)))
    assert seen.pop("version") == release
    assert seen == _seen(path)


def test_newest_duckdb_cli_opens_the_sink_file(tmp_path: Path) -> None:
    path = _deliver_twice(tmp_path, {"kind": "duckdb", "path": "out/reporting.duckdb"})
    cli = tool_venv(f"duckdb-cli-{NEWEST_1X}", [f"duckdb-cli=={NEWEST_1X}"]) / "duckdb"
    out = run_tool(cli, "-readonly", "-json", str(path), "-c",
                   "SELECT id, CAST(u AS VARCHAR) AS u, CAST(dec AS VARCHAR) AS dec "
                   "FROM all_types ORDER BY id")
    assert json.loads(out) == [
        {"id": 1, "u": "0b3c2f8e-9d6a-4c1e-8f7a-2a1b3c4d5e6f", "dec": "12.50"},
        {"id": 2, "u": "ffffffff-0000-4000-8000-000000000001", "dec": "-9999999999.99"},
        {"id": 3, "u": None, "dec": None}]


def test_storage_version_is_configurable_and_an_existing_file_keeps_its_own(
        tmp_path: Path) -> None:
    latest = _deliver_twice(tmp_path, {"kind": "duckdb", "path": "new.duckdb",
                                       "storage_version": "latest"})
    assert _storage(latest) == f"v{duckdb.__version__.rsplit('.', 1)[0]}.0+"
    pinned = _deliver_twice(tmp_path, {"kind": "duckdb", "path": "mid.duckdb",
                                       "storage_version": "v1.2.0"})
    assert _storage(pinned) == "v1.2.0+"
    sink = make_sink({"kind": "duckdb", "path": "new.duckdb"}, tmp_path)
    assert sink.deliver(all_types_delivery("more")) == 3
    assert _storage(latest).startswith("v2")


def test_unknown_storage_version_is_refused() -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="storage_version"):
        make_sink({"kind": "duckdb", "path": "x.duckdb", "storage_version": "1.0"}, Path("."))
