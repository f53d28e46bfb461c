"""``ferry run`` loads only what its jobs need: its fixed cost is mostly imports.

A behaviour check, not a timing: a run of a one-row SQLite ingest, in a fresh
interpreter, must not import the server, the migration tool (the schema is current),
HTTP clients or SQL parsers it does not use.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

NOT_NEEDED = {"fastapi", "uvicorn", "starlette", "jinja2", "alembic", "mako", "httpx",
              "sqlglot", "pandas", "polars", "connectorx", "pymysql", "psycopg",
              "dataferry.server", "dataferry.events.nats", "pyarrow.dataset",
              "sqlalchemy.dialects.postgresql"}

RUN = """
import json, sys
from dataferry.cli.main import invoke
code = invoke(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
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
"""


def run_in_fresh_process(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          check=False, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], set(result["modules"])


def test_a_run_imports_only_what_its_jobs_need(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": TEAM})
    with sqlite3.connect(root / "tiny.db") as lite:
        lite.execute("CREATE TABLE tiny (id INTEGER PRIMARY KEY)")
        lite.execute("INSERT INTO tiny VALUES (1)")
    for _ in range(2):  # the first creates the metadata database (migrations run then)
        code, modules = run_in_fresh_process("run", "crm.tiny", "--full", "--model", str(root))
        assert code == 0
    loaded = {name for name in NOT_NEEDED
              if name in modules or any(m.startswith(name + ".") for m in modules)}
    assert loaded == set()
