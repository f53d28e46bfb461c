"""The gateway agent across a real network boundary (tests/agent/netns.py): a PostgreSQL
inside namespace A with password authentication that the hub, in the root namespace,
cannot reach; the hub reachable from A; ``ferry agent`` inside A. The data still arrives
in the hub's store and a hub-side sink; the agent listens on nothing; the password shows
in no hub file or log; an agent killed mid-job is replaced and the data published once;
a revoked agent stops and the work waits."""

from __future__ import annotations

import json
import logging
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataferry.agent.queue import AgentJobs
from dataferry.engine.context import RunContext
from dataferry.metadata import RunHistory
from tests.agent.hub import (
    NETWORK,
    PASSWORD_VARIABLE,
    agent_log,
    context_of,
    running_hub,
    start_agent,
    stop,
    write_model,
)
from tests.agent.netns import PrivateNetwork
from tests.conftest import Result

ROWS = 500


@pytest.fixture
def erp(private_network: PrivateNetwork) -> str:
    """A database inside A with ``customers`` (and a slow view of it); its dsn."""
    name = f"erp_{secrets.token_hex(4)}"
    dsn = private_network.create_database(name)
    private_network.psql(name, (
        "create table customers (id bigint primary key, name text); "
        f"insert into customers select g, 'customer ' || g from generate_series(1, {ROWS}) g; "
        "create view slow_customers as select c.* from customers c, pg_sleep(6)"))
    return dsn


@pytest.fixture
def hub_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _enroll(ferry: Callable[..., Result], root: Path) -> str:
    made = ferry("agents", "enroll", NETWORK, "--json", "--model", root)
    assert made.code == 0, made
    return str(json.loads(made.out)["token"])


def _agent_in(network: PrivateNetwork, hub: tuple[str, int], home: Path,
              token: str | None = None) -> subprocess.Popen[bytes]:
    return start_agent(f"http://{hub[0]}:{hub[1]}", home, token=token,
                       env={PASSWORD_VARIABLE: network.pg.password},
                       wrapper=["ip", "netns", "exec", network.name])


def _mirror(root: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "out" / "mirror.duckdb"), read_only=True) as db:
        return db.execute("select count(*), min(id), max(id) from customers").fetchall()


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.fixture
def branch(private_network: PrivateNetwork) -> str:
    """A second database inside A, for a consumer whose sink is in the network."""
    name = f"branch_{secrets.token_hex(4)}"
    private_network.create_database(name)
    return name


@pytest.fixture
def hub_model(tmp_path: Path, erp: str, branch: str,
              private_network: PrivateNetwork) -> Iterator[tuple[Path, RunContext]]:
    root = write_model(tmp_path / "model", erp, inside_sink=private_network.pg.dsn(branch))
    context = context_of(root)
    yield root, context
    context.close()


def test_data_from_the_private_database_arrives_through_the_agent(
        private_network: PrivateNetwork, hub_model: tuple[Path, RunContext], tmp_path: Path,
        branch: str, ferry: Callable[..., Result],
        hub_logs: pytest.LogCaptureFixture) -> None:
    root, context = hub_model
    pg = private_network.pg
    assert not private_network.reachable_from_root(pg.host, pg.port)  # the hub cannot
    home = tmp_path / "agent" / "home"
    with running_hub(context, host=private_network.hub_ip) as hub:
        agent = _agent_in(private_network, hub, home, _enroll(ferry, root))
        try:
            ran = ferry("run", "crm.customers", "crm.mirror", "crm.branch", "--model", root,
                        "--agent-wait", "60s", "--json")
            assert ran.code == 0, (ran, agent_log(home))
            assert {r["job"]: (r["status"], r["rows"]) for r in json.loads(ran.out)} == {
                "ingest:crm.customers": ("succeeded", ROWS),
                "deliver:crm.mirror:customers": ("succeeded", ROWS),
                "deliver:crm.branch:customers": ("succeeded", ROWS)}
            assert private_network.listening_sockets(agent.pid) == []  # it only dials out
            assert agent.poll() is None
        finally:
            stop(agent)
    assert _mirror(root) == [(ROWS, 1, ROWS)]
    # the delivery into the second database inside A, applied there by the agent
    assert private_network.psql(branch, "select count(*), min(id), max(id) from customers"
                                ).strip() == f"{ROWS}|1|{ROWS}"
    assert private_network.psql(branch, "select dataset, version from _ferry_loads"
                                ).strip() == "crm.customers|1"
    head = context.store.dataset("crm.customers").head()
    assert head is not None and head.manifest.rows == ROWS
    assert ferry("verify", "--model", root).code == 0
    password = pg.password.encode()
    assert _files_holding(root, password) == []  # store, metadata DB, run logs, uploads
    assert pg.password not in hub_logs.text + ran.out + ran.err
    assert pg.password not in agent_log(home)


def test_an_agent_killed_mid_job_inside_the_network_delivers_exactly_once(
        private_network: PrivateNetwork, tmp_path: Path, erp: str, branch: str,
        ferry: Callable[..., Result]) -> None:
    root = write_model(tmp_path / "model", erp, read="table: slow_customers",
                       inside_sink=private_network.pg.dsn(branch))
    context = context_of(root)
    home = tmp_path / "agent" / "home"
    try:
        with running_hub(context, host=private_network.hub_ip, lease_seconds=3) as hub:
            agent = _agent_in(private_network, hub, home, _enroll(ferry, root))
            log = tmp_path / "run.log"
            with log.open("wb") as output:
                run = subprocess.Popen(
                    [str(Path(sys.executable).parent / "ferry"), "run", "crm.customers",
                     "crm.mirror", "crm.branch", "--model", str(root), "--agent-wait", "90s"],
                    stdout=output, stderr=subprocess.STDOUT)
            queue = AgentJobs(context.metadata)
            try:
                _wait(lambda: _state(queue) == "running", "the agent to take the job")
                agent.send_signal(signal.SIGKILL)  # mid-read: the view sleeps 6 s
                agent.wait(timeout=10)
                time.sleep(4)  # its 3 s lease runs out
                agent = _agent_in(private_network, hub, home)  # same home: no token
                assert run.wait(timeout=180) == 0, (log.read_text(), agent_log(home))
            finally:
                stop(agent)
                stop(run)
        job = queue.get(1)
        assert job is not None and (job.state, job.attempt) == ("done", 2)
        assert [v.number for v in context.store.dataset("crm.customers").versions()] == [1]
        assert _mirror(root) == [(ROWS, 1, ROWS)]
        with duckdb.connect(str(root / "out" / "mirror.duckdb"), read_only=True) as db:
            assert db.execute("select count(*) from _ferry_loads").fetchone() == (1,)
        assert private_network.psql(branch, "select count(*), count(distinct id) from customers"
                                    ).strip() == f"{ROWS}|{ROWS}"
        assert private_network.psql(branch, "select dataset, version from _ferry_loads"
                                    ).strip() == "crm.customers|1"
        runs = RunHistory(context.metadata)
        last = runs.last_run("ingest:crm.customers")
        assert last is not None and last.status == "succeeded"
        detail = runs.get_run(last.id)
        assert detail is not None
        lines = [line.message for line in detail.log]
        assert any("left it (vanished or revoked)" in line for line in lines), lines
    finally:
        context.close()


def test_a_revoked_agent_inside_the_network_stops_and_gets_no_work(
        private_network: PrivateNetwork, hub_model: tuple[Path, RunContext], tmp_path: Path,
        ferry: Callable[..., Result]) -> None:
    root, context = hub_model
    home = tmp_path / "agent" / "home"
    with running_hub(context, host=private_network.hub_ip) as hub:
        agent = _agent_in(private_network, hub, home, _enroll(ferry, root))
        try:
            _wait(lambda: (home / "credential.json").exists(), "the agent to enroll")
            agent_id = json.loads((home / "credential.json").read_text())["agent_id"]
            assert ferry("agents", "revoke", str(agent_id), "--model", root).code == 0
            assert agent.wait(timeout=30) == 1
            ran = ferry("run", "crm.customers", "--model", root, "--agent-wait", "2s")
            assert ran.code == 1 and "waiting for an agent of hq-lan" in ran.err
            assert context.store.dataset("crm.customers").head() is None  # nothing ran
        finally:
            stop(agent)


def _state(queue: AgentJobs) -> str | None:
    job = queue.get(1)
    return None if job is None else job.state


def _wait(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


CUT = """\
table inet ferry_cut {{
  chain out {{
    type filter hook output priority 0; policy accept;
    ip daddr {hub} drop
  }}
}}
"""


def test_an_agent_cut_off_mid_job_loses_it_and_the_data_is_published_once(
        private_network: PrivateNetwork, tmp_path: Path, erp: str,
        ferry: Callable[..., Result]) -> None:
    root = write_model(tmp_path / "model", erp, read="table: slow_customers")
    context = context_of(root)
    home = tmp_path / "agent" / "home"
    try:
        with running_hub(context, host=private_network.hub_ip, lease_seconds=3) as hub:
            agent = _agent_in(private_network, hub, home, _enroll(ferry, root))
            log = tmp_path / "run.log"
            with log.open("wb") as output:
                run = subprocess.Popen(
                    [str(Path(sys.executable).parent / "ferry"), "run", "crm.customers",
                     "crm.mirror", "--model", str(root), "--agent-wait", "120s"],
                    stdout=output, stderr=subprocess.STDOUT)
            queue = AgentJobs(context.metadata)
            try:
                _wait(lambda: _state(queue) == "running", "the agent to take the job")
                cut = subprocess.run(private_network.command(["nft", "-f", "-"]),
                                     input=CUT.format(hub=private_network.hub_ip), text=True,
                                     capture_output=True)
                assert cut.returncode == 0, cut.stderr
                _wait(lambda: (queue.get(1) or _Never).attempt == 1
                      and _state(queue) == "queued", "the lease to run out", seconds=30)
                time.sleep(8)  # the agent finishes its read and fails to reach the hub
                mended = subprocess.run(private_network.command(
                    ["nft", "delete", "table", "inet", "ferry_cut"]), capture_output=True)
                assert mended.returncode == 0, mended.stderr
                assert run.wait(timeout=180) == 0, (log.read_text(), agent_log(home))
                assert agent.poll() is None  # the same agent: it dropped attempt 1, ran 2
            finally:
                subprocess.run(private_network.command(
                    ["nft", "delete", "table", "inet", "ferry_cut"]), capture_output=True)
                stop(agent)
                stop(run)
        job = queue.get(1)
        assert job is not None and (job.state, job.attempt) == ("done", 2)
        assert [v.number for v in context.store.dataset("crm.customers").versions()] == [1]
        assert _mirror(root) == [(ROWS, 1, ROWS)]
    finally:
        context.close()


class _Never:
    state = "never"
    attempt = 0
