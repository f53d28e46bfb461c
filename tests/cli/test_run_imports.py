"""``ferry run`` loads only what its jobs need: its fixed cost is mostly imports.

A behaviour check, not a timing: a run of a one-row SQLite ingest, in a fresh
interpreter, must not import the server, the migration tool (the schema is current),
SQLAlchemy (the run history goes through sqlite3), HTTP clients or SQL parsers it does
not use, the SQL binding of transformers it does not run, or progress bars off a
terminal, or the other commands' modules; and before it first reads its source, nothing
only the writing needs: DuckDB, deltalake, pyarrow.parquet, cryptography, the store's
writer.

And the run's own check parses and binds only the SQL of the consumers and transformers
it runs (``where:``, the policy's filter and read-column rules, binding): one that fails
stops a run of it (with ``ferry check``'s finding), not a run of something else.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dataferry.cli.main import COMMAND_MODULES
from tests.conftest import Result

NOT_NEEDED = {"fastapi", "uvicorn", "starlette", "jinja2", "alembic", "mako", "httpx",
              "sqlglot", "pandas", "polars", "connectorx", "pymysql", "psycopg",
              "dataferry.server", "dataferry.events.nats", "pyarrow.dataset",
              "sqlalchemy", "dataferry.metadata.schema", "dataferry.engine.bind",
              "rich.progress", "pyspark", "py4j", "dataferry.engine.spark",
              # a command registers its own module's commands only (cli.main)
              *(f"dataferry.cli.{module}" for module in COMMAND_MODULES
                if module != "run_commands")}
NOT_BEFORE_THE_READ = {"duckdb", "deltalake", "pyarrow.parquet", "cryptography",
                       "dataferry.store.publish"}

RUN = """
import json, sys
import dataferry.startup_trace as trace
before_read = []
def first_source_read():
    before_read.append(sorted(sys.modules))
trace.first_source_read = first_source_read  # ingest imports it when it first runs
from dataferry.cli.main import invoke
code = invoke(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules), "before_read": before_read}))
"""

TEAM = """\
team: crm
zone: eu
owners: [crm@acme.example]
sources:
  lite:
    kind: sqlite
    path: tiny.db
    datasets:
      tiny:
        table: tiny
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          secret: {type: string, classification: confidential}
transformers:
  broken:
    inputs: [crm.tiny]
    sql: select id, nope from tiny
    columns:
      id: {type: int64, nullable: false}
      nope: {type: int64}
consumers:
  report:
    sink: {kind: duckdb, path: report.duckdb}
    datasets:
      - {ref: crm.tiny, where: "nope > 0"}
"""

OPS = """\
team: ops
zone: us
owners: [ops@acme.example]
consumers:
  watch:
    sink: {kind: duckdb, path: watch.duckdb}
    datasets:
      - {ref: crm.tiny, columns: [id], where: "secret > 'm'"}
"""


def tiny_model(model: Callable[..., Path]) -> Path:
    root = model({"teams/crm/crm.yaml": TEAM, "teams/ops/ops.yaml": OPS})
    with sqlite3.connect(root / "tiny.db") as lite:
        lite.execute("CREATE TABLE tiny (id INTEGER PRIMARY KEY, secret TEXT)")
        lite.execute("INSERT INTO tiny VALUES (1, 'x')")
    return root


def run_in_fresh_process(*args: str) -> tuple[int, set[str], set[str]]:
    """The exit code, the modules loaded by the end, and those loaded by the first read."""
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          check=False, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["before_read"], "the run never read its source"
    return result["code"], set(result["modules"]), set(result["before_read"][0])


def _among(names: set[str], modules: set[str]) -> set[str]:
    return {name for name in names
            if name in modules or any(m.startswith(name + ".") for m in modules)}


def test_a_run_imports_only_what_its_jobs_need(model: Callable[..., Path]) -> None:
    root = tiny_model(model)
    for _ in range(2):  # the first creates the metadata database (migrations run then)
        code, modules, before_read = run_in_fresh_process("run", "crm.tiny", "--full",
                                                          "--model", str(root))
        assert code == 0
    assert _among(NOT_NEEDED, modules) == set()
    assert _among(NOT_BEFORE_THE_READ, before_read) == set()
    assert _among(NOT_BEFORE_THE_READ, modules) == NOT_BEFORE_THE_READ  # then, it wrote


def test_a_run_binds_the_sql_of_the_transformers_it_runs(
        model: Callable[..., Path], ferry: Callable[..., Result]) -> None:
    root = tiny_model(model)
    assert ferry("run", "crm.tiny", "--model", root).code == 0
    for refs in (["crm.broken"], []):
        failed = ferry("run", *refs, "--model", root)
        assert failed.code != 0
        assert "crm.broken" in failed.err and "nope" in failed.err
        assert "ferry check" in failed.err


def test_a_run_checks_the_where_of_the_consumers_it_delivers_to(
        model: Callable[..., Path], ferry: Callable[..., Result]) -> None:
    root = tiny_model(model)
    assert ferry("run", "crm.tiny", "--model", root).code == 0
    unknown = ferry("run", "crm.report", "--model", root)
    assert unknown.code != 0
    assert "where uses unknown column 'nope'" in unknown.err
    leaking = ferry("run", "ops.watch", "--model", root)
    assert leaking.code != 0
    assert "filters crm.tiny on column 'secret'" in leaking.err
    assert not (root / "watch.duckdb").exists()
