"""A hub and agents for the agent tests: the model, ``ferry serve``'s app on a port, and
``ferry agent`` processes (optionally run by a wrapper, e.g. inside a network namespace)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from tests.conftest import write_files

NETWORK = "hq-lan"
PASSWORD_VARIABLE = "AGENT_TEST_PG_PASSWORD"
ECOSYSTEM = """\
ecosystem: acme
zones: {eu: {}}
platforms:
  local: {engine: duckdb}
  hq: {engine: duckdb, network: hq-lan}
"""
TEAM = """\
team: crm
zone: eu
owners: [ops@acme.example]
sources:
  erp:
    kind: postgres
    network: hq-lan
    dsn: {dsn}
    password: ${{env:AGENT_TEST_PG_PASSWORD}}
    datasets:
      customers:
        {read}
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
consumers:
  mirror:
    sink: {{kind: duckdb, path: out/mirror.duckdb}}
    datasets:
      - {{ref: crm.customers, mode: merge}}
"""


INSIDE_SINK = """\
  branch:
    sink:
      kind: postgres
      network: hq-lan
      dsn: {dsn}
      password: ${{env:AGENT_TEST_PG_PASSWORD}}
    datasets:
      - {{ref: crm.customers, mode: merge}}
"""


def write_model(root: Path, dsn: str, *, read: str = "table: customers",
                inside_sink: str | None = None) -> Path:
    """A model whose ``crm.customers`` comes from PostgreSQL ``dsn`` in network hq-lan
    (its password a reference only the agent can resolve) into a hub-side DuckDB
    (``crm.mirror``) and, with ``inside_sink``, into that PostgreSQL database in the
    network too (``crm.branch``)."""
    team = TEAM.format(dsn=dsn, read=read)
    if inside_sink is not None:
        team += INSIDE_SINK.format(dsn=inside_sink)
    return write_files(root, {"ferry.yaml": ECOSYSTEM, "teams/crm/crm.yaml": team})


def context_of(root: Path) -> RunContext:
    return RunContext.from_loaded(load_model(root))


@contextmanager
def running_hub(context: RunContext, *, host: str = "127.0.0.1",
                lease_seconds: float | None = None,
                scheduler: bool = False) -> Iterator[tuple[str, int]]:
    """The model's server (``scheduler``: with the scheduler inside, as ``ferry serve``) on
    a free port of ``host``; yields (host, port)."""
    app = create_app(context, scheduler=scheduler)
    if lease_seconds is not None:
        app.state.agent_lease_seconds = lease_seconds
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = int(listener.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.02)
    try:
        yield host, port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


def start_agent(hub: str, home: Path, *, token: str | None = None,
                env: dict[str, str] | None = None, wrapper: Sequence[str] = (),
                cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """``ferry agent --hub HUB [--token T] --home HOME`` as its own process, its output in
    ``HOME.log``; ``wrapper`` runs it (e.g. ``ip netns exec A``)."""
    ferry = Path(sys.executable).parent / "ferry"
    command = [*wrapper, str(ferry), "agent", "--hub", hub, "--home", str(home)]
    if token is not None:
        command += ["--token", token]
    log = home.with_name(home.name + ".log")
    home.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd)


def agent_log(home: Path) -> str:
    return home.with_name(home.name + ".log").read_text(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
