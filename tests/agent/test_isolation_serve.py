"""The gateway agent in real isolation (issue 17): a PostgreSQL inside network namespace A
that only processes in A reach (tests/agent/netns.py), the hub (``ferry serve``) in the
root namespace on the address A sees it at, and ``ferry agent`` inside A, the only one
that knows the database's password.

Proves: data from A's database arrives in the hub's store, a hub-side sink and a second
database inside A (delivered by the agent); the agent listens on no port; the password is
in no hub file or log; an agent killed mid-job and restarted publishes and delivers
exactly once; a revoked agent stops, its job goes to another agent of A, and without one
work waits; ``ferry check --connect`` sees the live columns inside A through the agent.

Here the hub is a real ``ferry serve`` process, as an operator runs it: its output and
that of every ``ferry`` command on the hub are the hub logs searched for the password, and
a vanished agent's job waits out the server's own 60 s lease. test_isolation.py proves the
same with the server's app in the test process (shortened leases, a network cut)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.agent.netns import PrivateNetwork
from tests.conftest import write_files

FERRY = Path(sys.executable).with_name("ferry")
VARIABLE = "A_PG_PASSWORD"
ECOSYSTEM = """\
ecosystem: acme
zones: {eu: {}}
platforms:
  local: {engine: duckdb}
  a: {engine: duckdb, network: a}
"""
TEAM = """\
team: crm
zone: eu
owners: [ops@acme.example]
sources:
  erp:
    kind: postgres
    network: a
    dsn: {dsn}
    password: ${{env:A_PG_PASSWORD}}
    datasets:
      customers:
        table: {table}
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
consumers:
  mirror:
    sink: {{kind: duckdb, path: out/mirror.duckdb}}
    datasets:
      - {{ref: crm.customers, mode: append}}
  branch:
    sink:
      kind: postgres
      network: a
      dsn: {branch}
      password: ${{env:A_PG_PASSWORD}}
    datasets:
      - {{ref: crm.customers, mode: append}}
"""


class Hub:
    """``ferry serve`` for a model in the root namespace, on the address namespace A
    reaches; ``ferry`` commands run against it without the password in their environment,
    their output kept as the hub's logs."""

    def __init__(self, network: PrivateNetwork, directory: Path, dsn: str, table: str,
                 branch: str, *, mask: bool = False) -> None:
        self.network, self.directory = network, directory
        team = TEAM.format(dsn=dsn, table=table, branch=branch)
        if mask:  # both consumers get crm.customers with name masked
            team = team.replace("mode: append}", "mode: append, mask: [name]}")
        self.root = write_files(directory / "model", {"ferry.yaml": ECOSYSTEM,
                                                      "teams/crm/crm.yaml": team})
        self.logs = directory / "logs"
        self.logs.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k != VARIABLE}
        with socket.socket() as probe:
            probe.bind((network.hub_ip, 0))
            port = int(probe.getsockname()[1])
        self.url = f"http://{network.hub_ip}:{port}"
        with (self.logs / "serve.log").open("ab") as log:
            self.server = subprocess.Popen(
                [FERRY, "serve", "--host", network.hub_ip, "--port", str(port), "--no-scheduler",
                 "--model", self.root], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        _wait(lambda: network.reachable_from_root(network.hub_ip, port, timeout=0.5),
              "ferry serve to listen", process=self.server)
        self.agent_processes: list[subprocess.Popen[bytes]] = []
        self._commands = 0

    def ferry(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """``ferry ARGS --model ROOT`` on the hub; stdout and stderr also go to its logs."""
        done = subprocess.run([FERRY, *map(str, args), "--model", str(self.root)],
                              capture_output=True, text=True, env=self.env, timeout=300)
        self._commands += 1
        (self.logs / f"ferry-{self._commands}.log").write_text(done.stdout + done.stderr)
        return done

    def ferry_in_background(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """``ferry ARGS --model ROOT`` started on the hub; the process and its log."""
        self._commands += 1
        path = self.logs / f"ferry-{self._commands}.log"
        with path.open("ab") as log:
            return subprocess.Popen([FERRY, *args, "--model", str(self.root)], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env), path

    def enroll(self) -> str:
        made = self.ferry("agents", "enroll", "a", "--json")
        assert made.returncode == 0, made.stderr
        token: str = json.loads(made.stdout)["token"]
        return token

    def agents(self) -> list[dict[str, Any]]:
        listed = self.ferry("agents", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        found: list[dict[str, Any]] = json.loads(listed.stdout)
        return found

    def start_agent(self, home: Path, token: str | None = None) -> subprocess.Popen[bytes]:
        """``ferry agent`` inside A, the password in its environment only."""
        command: list[str | Path] = [FERRY, "agent", "--hub", self.url, "--home", home]
        if token is not None:
            command += ["--token", token]
        home.parent.mkdir(parents=True, exist_ok=True)
        with home.with_name(home.name + ".log").open("ab") as log:
            agent = self.network.popen(
                command, env={**os.environ, VARIABLE: self.network.pg.password},
                stdout=log, stderr=subprocess.STDOUT)
        self.agent_processes.append(agent)
        return agent

    def close(self) -> None:
        for process in [*self.agent_processes, self.server]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def hub_files_holding(self, secret: str) -> list[Path]:
        """Files of the hub (model, home, store, metadata DB, sink, logs) holding ``secret``."""
        return [p for p in self.directory.rglob("*")
                if p.is_file() and secret.encode() in p.read_bytes()]

    def mirror_rows(self) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.root / "out" / "mirror.duckdb"), read_only=True) as db:
            return db.execute("select id, name from customers order by id").fetchall()

    def mirror_loads(self) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.root / "out" / "mirror.duckdb"), read_only=True) as db:
            return db.execute("select dataset, version from _ferry_loads").fetchall()

    def run_id(self, job: str) -> int:
        listed = self.ferry("runs", "--job", job, "--json")
        assert listed.returncode == 0, listed.stderr
        found: int = json.loads(listed.stdout)[0]["id"]
        return found

    def run_log(self, job: str) -> list[str]:
        """The log lines of ``job``'s last run (``ferry runs ID --json``)."""
        shown = self.ferry("runs", str(self.run_id(job)), "--json")
        assert shown.returncode == 0, shown.stderr
        return [line["message"] for line in json.loads(shown.stdout)["log"]]

    def versions(self) -> list[dict[str, Any]]:
        logged = self.ferry("log", "crm.customers", "--json")
        assert logged.returncode == 0, logged.stderr
        found: list[dict[str, Any]] = json.loads(logged.stdout)
        return found


def agent_log(home: Path) -> str:
    return home.with_name(home.name + ".log").read_text(errors="replace")


def _wait(condition: Callable[[], bool], what: str, seconds: float = 60,
          process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process is None or process.poll() is None, f"exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _wait_for(found: Callable[[], list[int]], what: str, seconds: float = 60,
              process: subprocess.Popen[Any] | None = None) -> list[int]:
    """``found()`` once it is not empty."""
    result: list[int] = []

    def met() -> bool:
        result[:] = found()
        return bool(result)

    _wait(met, what, seconds, process)
    return result


@pytest.fixture
def source_db(private_network: PrivateNetwork) -> Iterator[str]:
    """A database inside A with ``customers`` (3 rows) and ``held_customers`` (the same,
    read only once table ``hold`` is empty, or after 180 s: a job to kill or revoke
    mid-way, however slow the machine); yields its dsn (no password)."""
    name = f"crm_{uuid.uuid4().hex[:8]}"
    dsn = private_network.create_database(name)
    # A volatile function takes a new snapshot per statement: the loop sees the delete.
    private_network.psql(name, "create table customers (id bigint primary key, name text); "
                         "insert into customers values (1, 'ada'), (2, 'grace'), (3, 'edsger'); "
                         "create table hold (on_purpose boolean); insert into hold values (true); "
                         "create function held() returns int language plpgsql volatile as $$ "
                         "begin for i in 1..1800 loop exit when not exists (select from hold); "
                         "perform pg_sleep(0.1); end loop; return 0; end $$; "
                         "create view held_customers as select c.* from customers c, "
                         "(select held()) s")
    yield dsn
    private_network.psql("postgres", f"drop database if exists {name} with (force)")


@pytest.fixture
def branch_db(private_network: PrivateNetwork) -> Iterator[str]:
    """A second, empty database inside A: the sink ``crm.branch`` delivers into it."""
    name = f"branch_{uuid.uuid4().hex[:8]}"
    yield private_network.create_database(name)
    private_network.psql("postgres", f"drop database if exists {name} with (force)")


def branch_rows(network: PrivateNetwork, dsn: str, sql: str) -> list[str]:
    """Rows of ``sql`` in the database ``dsn`` inside A, one ``a|b`` line each."""
    return network.psql(dsn.rsplit("/", 1)[1], sql).split()


@pytest.fixture
def make_hub(private_network: PrivateNetwork, source_db: str, branch_db: str,
             tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    assert VARIABLE not in os.environ  # the hub side must not know the password
    hubs: list[Hub] = []

    def make(table: str = "customers", mask: bool = False) -> Hub:
        hub = Hub(private_network, tmp_path / "hub", source_db, table, branch_db, mask=mask)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()


def test_data_from_inside_a_arrives_and_the_password_stays_there(
        private_network: PrivateNetwork, make_hub: Callable[[str], Hub], branch_db: str,
        tmp_path: Path) -> None:
    hub = make_hub("customers")
    pg = private_network.pg
    assert not private_network.reachable_from_root(pg.host, pg.port)  # the hub cannot
    assert private_network.reachable_from_inside(private_network.hub_ip,
                                                 int(hub.url.rsplit(":", 1)[1]))
    home = tmp_path / "inside-a" / "agent"
    agent = hub.start_agent(home, hub.enroll())
    ran = hub.ferry("run", "--agent-wait", "90s", "--json")
    assert ran.returncode == 0, (ran.stdout, ran.stderr, agent_log(home))
    assert {r["job"]: (r["status"], r["rows"]) for r in json.loads(ran.stdout)} == {
        "ingest:crm.customers": ("succeeded", 3),
        "deliver:crm.mirror:customers": ("succeeded", 3),
        "deliver:crm.branch:customers": ("succeeded", 3)}
    assert agent.poll() is None
    assert private_network.listening_sockets(agent.pid) == []  # it dials out, never listens
    [listed] = hub.agents()
    assert listed["network"] == "a" and listed["last_seen"] is not None
    # in the hub's store (signed there), its sink, and the second database inside A
    assert [v["rows"] for v in hub.versions()] == [3]
    verified = hub.ferry("verify")
    assert verified.returncode == 0, verified.stdout
    assert hub.mirror_rows() == [(1, "ada"), (2, "grace"), (3, "edsger")]
    assert branch_rows(private_network, branch_db, "select id, name from customers order by id"
                       ) == ["1|ada", "2|grace", "3|edsger"]
    assert any("waiting for an agent of a" in line
               for line in hub.run_log("deliver:crm.branch:customers"))
    # a second run finds nothing new: nothing is published or sent twice
    again = hub.ferry("run", "--agent-wait", "90s", "--json")
    assert {r["job"]: r["status"] for r in json.loads(again.stdout)} == {
        "ingest:crm.customers": "unchanged", "deliver:crm.mirror:customers": "unchanged",
        "deliver:crm.branch:customers": "unchanged"}, again.stderr
    hub.close()  # the server's log is complete
    assert (hub.logs / "serve.log").stat().st_size > 0
    assert hub.hub_files_holding(pg.password) == []
    assert pg.password not in agent_log(home)


def test_a_masked_need_inside_a_gets_the_hubs_hashes_and_no_value_enters_a(
        private_network: PrivateNetwork, make_hub: Callable[..., Hub], branch_db: str,
        tmp_path: Path) -> None:
    hub = make_hub("customers", mask=True)
    home = tmp_path / "inside-a" / "agent"
    hub.start_agent(home, hub.enroll())
    ran = hub.ferry("run", "--agent-wait", "90s", "--json")
    assert ran.returncode == 0, (ran.stdout, ran.stderr, agent_log(home))
    assert {r["job"]: (r["status"], r["rows"]) for r in json.loads(ran.stdout)} == {
        "ingest:crm.customers": ("succeeded", 3),
        "deliver:crm.mirror:customers": ("succeeded", 3),
        "deliver:crm.branch:customers": ("succeeded", 3)}
    mirrored = hub.mirror_rows()
    assert [name for _, name in mirrored] != ["ada", "grace", "edsger"]
    assert branch_rows(private_network, branch_db, "select id, name from customers order by id"
                       ) == [f"{i}|{name}" for i, name in mirrored]  # the hub's hashes
    hub.close()
    # the agent (all it wrote inside A) never held a value the masks hide, nor the key
    key = (hub.root / ".ferry" / "keys" / "mask.key").read_bytes()
    for secret in (b"grace", b"edsger", key, key.hex().encode()):
        assert not [p for p in home.parent.rglob("*") if p.is_file()
                    and secret in p.read_bytes()]


def test_an_agent_killed_mid_job_and_restarted_delivers_exactly_once(
        private_network: PrivateNetwork, make_hub: Callable[[str], Hub], source_db: str,
        branch_db: str, tmp_path: Path) -> None:
    hub = make_hub("held_customers")
    home = tmp_path / "inside-a" / "agent"
    agent = hub.start_agent(home, hub.enroll())
    run, run_log = hub.ferry_in_background("run", "--agent-wait", "180s")
    _wait(lambda: any(a["running_job"] for a in hub.agents()), "the agent to take the job",
          process=run)
    agent.send_signal(signal.SIGKILL)  # mid-job: reading the source takes 30 s
    agent.wait(10)
    private_network.psql(source_db.rsplit("/", 1)[1], "delete from hold")  # quick from now on
    # the run says so once the agent's lease has run out (60 s on ferry serve) ...
    _wait(lambda: any("left it (vanished or revoked)" in line
                      for line in hub.run_log("ingest:crm.customers")),
          "the run to give the job up", seconds=120, process=run)
    again = hub.start_agent(home)  # ... and the same agent, restarted, needs no token
    assert run.wait(240) == 0, (run_log.read_text(), agent_log(home))
    assert again.poll() is None
    lines = hub.run_log("ingest:crm.customers")
    assert any("took it (attempt 2)" in line for line in lines), lines
    # published once, delivered once on the hub and once inside A
    assert [v["rows"] for v in hub.versions()] == [3]
    assert hub.mirror_rows() == [(1, "ada"), (2, "grace"), (3, "edsger")]
    assert hub.mirror_loads() == [("crm.customers", 1)]
    assert branch_rows(private_network, branch_db, "select id, name from customers order by id"
                       ) == ["1|ada", "2|grace", "3|edsger"]
    assert branch_rows(private_network, branch_db, "select dataset, version from _ferry_loads"
                       ) == ["crm.customers|1"]


def test_a_revoked_agent_stops_and_its_job_goes_to_another(
        private_network: PrivateNetwork, make_hub: Callable[[str], Hub], source_db: str,
        branch_db: str, tmp_path: Path) -> None:
    hub = make_hub("held_customers")  # read in 30 s: time to revoke its agent meanwhile
    first_home, second_home = tmp_path / "inside-a" / "first", tmp_path / "inside-a" / "second"
    first = hub.start_agent(first_home, hub.enroll())
    run, run_log = hub.ferry_in_background("run", "crm.customers", "crm.mirror",
                                           "--agent-wait", "120s")
    running = _wait_for(lambda: [a["id"] for a in hub.agents() if a["running_job"]],
                        "the agent to take the job", process=run)
    revoked = hub.ferry("agents", "revoke", str(running[0]))
    assert revoked.returncode == 0, revoked.stderr
    private_network.psql(source_db.rsplit("/", 1)[1], "delete from hold")  # reads are quick now
    # its job went back to the queue: another agent of A takes it at once
    second = hub.start_agent(second_home, hub.enroll())
    assert run.wait(120) == 0, (run_log.read_text(), agent_log(second_home))
    assert first.wait(60) == 1, agent_log(first_home)  # refused at its next contact
    assert "revoked" in agent_log(first_home)
    lines = hub.run_log("ingest:crm.customers")
    assert any("took it (attempt 2)" in line for line in lines), lines
    assert [v["rows"] for v in hub.versions()] == [3]  # once, by the second agent
    assert hub.mirror_rows() == [(1, "ada"), (2, "grace"), (3, "edsger")]
    # the revoked one stays refused; with the second revoked too, work waits
    assert hub.start_agent(first_home).wait(60) == 1
    [remaining] = hub.agents()
    assert hub.ferry("agents", "revoke", str(remaining["id"])).returncode == 0
    assert second.wait(60) == 1
    private_network.psql(source_db.rsplit("/", 1)[1],
                         "insert into customers values (4, 'barbara')")
    waited = hub.ferry("run", "crm.customers", "--agent-wait", "3s")
    assert waited.returncode == 1
    assert "waiting for an agent of a" in waited.stderr
    assert [v["rows"] for v in hub.versions()] == [3]  # nothing new was published


def test_check_connect_reads_the_live_columns_inside_a(
        private_network: PrivateNetwork, make_hub: Callable[[str], Hub], source_db: str,
        branch_db: str, tmp_path: Path) -> None:
    hub = make_hub("customers")

    def findings(about: str = "crm.customers") -> list[tuple[str, str, str]]:
        checked = hub.ferry("check", "--connect", "--json")
        return [(f["code"], f["severity"], f["message"])
                for f in json.loads(checked.stdout)["findings"] if about in f["message"]]

    [(code, severity, message)] = findings()  # the hub alone cannot look inside A
    assert (code, severity) == ("unreachable", "warning") and "no agent is enrolled" in message
    [(code, severity, message)] = findings("crm.branch")  # nor at the sink inside A
    assert (code, severity) == ("unreachable", "warning") and "no agent is enrolled" in message
    home = tmp_path / "inside-a" / "agent"
    hub.start_agent(home, hub.enroll())
    assert findings() == []  # reached from inside A: the columns match
    assert findings("crm.branch") == []  # and the sink inside A too
    private_network.psql(source_db.rsplit("/", 1)[1], "alter table customers drop column name cascade")
    [(code, severity, message)] = findings()  # only the agent could have seen that
    assert (code, severity) == ("schema-mismatch", "error") and "name" in message
    private_network.psql("postgres", f"drop database {branch_db.rsplit('/', 1)[1]} with (force)")
    [(code, severity, message)] = findings("crm.branch")  # the sink inside A is gone
    assert (code, severity) == ("unreachable", "warning")
    assert "the agent of a cannot reach its sink" in message
    hub.close()
    assert hub.hub_files_holding(private_network.pg.password) == []
