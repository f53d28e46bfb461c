"""The gateway agent end to end on loopback: a real hub (``ferry serve``'s app), real
``ferry agent`` processes, a real PostgreSQL source. Isolation itself is proven with
network namespaces (``test_isolation``); here: enrollment, the run through the agent,
secrets that stay on the agent, waiting, revocation and an agent killed mid-job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest

from dataferry.agent.identity import Identity
from dataferry.agent.queue import AgentJobs
from dataferry.engine.context import RunContext
from dataferry.metadata import RunHistory
from tests.agent.hub import (
    PASSWORD_VARIABLE,
    agent_log,
    context_of,
    running_hub,
    start_agent,
    stop,
    write_model,
)
from tests.conftest import Result
from tests.connectors.pg_helpers import temporary_database

SECRET = "s3cret-only-the-agent-knows-7f1c"


@pytest.fixture
def pg() -> Iterator[str]:
    with temporary_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("create table customers (id bigint primary key, name text)")
            db.execute("insert into customers values (1, 'ada'), (2, 'grace'), (3, 'edsger')")
            db.execute("create view slow_customers as "
                       "select c.* from customers c, pg_sleep(6)")
        yield dsn


@pytest.fixture
def root(tmp_path: Path, pg: str) -> Path:
    assert PASSWORD_VARIABLE not in os.environ  # the hub side must not know it
    return write_model(tmp_path / "model", pg)


@pytest.fixture
def context(root: Path) -> Iterator[RunContext]:
    opened = context_of(root)
    yield opened
    opened.close()


def _enroll(ferry: Callable[..., Result], root: Path) -> str:
    made = ferry("agents", "enroll", "hq-lan", "--json", "--model", root)
    assert made.code == 0, made
    token = json.loads(made.out)["token"]
    assert isinstance(token, str) and token.startswith("fe_")
    return token


def _listening_pids() -> str:
    return subprocess.run(["ss", "-H", "-l", "-t", "-u", "-p"], capture_output=True,
                          text=True, check=True).stdout


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def _mirror_rows(root: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "out" / "mirror.duckdb"), read_only=True) as db:
        return db.execute("select id, name from customers order by id").fetchall()


def test_an_ingest_runs_on_the_agent_and_its_secret_never_reaches_the_hub(
        ferry: Callable[..., Result], root: Path, context: RunContext, tmp_path: Path,
        pg: str) -> None:
    home = tmp_path / "agent" / "home"
    with running_hub(context) as (host, port):
        token = _enroll(ferry, root)
        agent = start_agent(f"http://{host}:{port}", home, token=token,
                            env={PASSWORD_VARIABLE: SECRET})
        try:
            ran = ferry("run", "crm.customers", "crm.mirror", "--model", root,
                        "--agent-wait", "60s", "--json")
            assert ran.code == 0, (ran, agent_log(home))
            statuses = {r["job"]: r["status"] for r in json.loads(ran.out)}
            assert statuses == {"ingest:crm.customers": "succeeded",
                                "deliver:crm.mirror:customers": "succeeded"}
            assert f"pid={agent.pid}," not in _listening_pids()  # it dials out, never listens
            listed = ferry("agents", "list", "--json", "--model", root)
            agents = json.loads(listed.out)
            assert [(a["network"], a["running_job"]) for a in agents] == [("hq-lan", None)]
            assert agents[0]["last_seen"] is not None
        finally:
            stop(agent)
    assert _mirror_rows(root) == [(1, "ada"), (2, "grace"), (3, "edsger")]
    head = context.store.dataset("crm.customers").head()
    assert head is not None and head.manifest.rows == 3
    assert ferry("verify", "--model", root).code == 0  # signed on the hub, as any version
    runs = RunHistory(context.metadata)
    run = runs.last_run("ingest:crm.customers")
    assert run is not None
    lines = _log_of(runs, run.id)
    assert "waiting for an agent of hq-lan" in lines
    assert any("took it (attempt 1)" in line for line in lines)
    assert _files_holding(root, SECRET.encode()) == []  # not in the store, DB or any log
    assert (home / "credential.json").stat().st_mode & 0o777 == 0o600
    # a restart with the same home needs no token, and asks for none
    with running_hub(context) as (host, port):
        again = start_agent(f"http://{host}:{port}", home, env={PASSWORD_VARIABLE: SECRET})
        try:
            with psycopg.connect(pg, autocommit=True) as db:
                db.execute("insert into customers values (4, 'barbara')")
            ran = ferry("run", "crm.customers", "crm.mirror", "--model", root,
                        "--agent-wait", "60s")
            assert ran.code == 0, (ran, agent_log(home))
        finally:
            stop(again)
    assert _mirror_rows(root)[-1] == (4, "barbara")


def test_without_an_agent_the_run_waits_then_fails_with_that_reason(
        ferry: Callable[..., Result], root: Path) -> None:
    alone = ferry("run", "crm.customers", "--model", root, "--agent-wait", "1s")
    assert alone.code == 1
    assert "waiting for an agent of hq-lan: none is enrolled" in alone.err
    _enroll(ferry, root)  # enrolled, but no agent runs
    started = time.monotonic()
    waited = ferry("run", "crm.customers", "--model", root, "--agent-wait", "2s")
    assert waited.code == 1
    assert "waiting for an agent of hq-lan: none took the job within 2 s" in waited.err
    assert time.monotonic() - started >= 2


def test_a_revoked_agent_stops_and_gets_no_job(
        ferry: Callable[..., Result], root: Path, context: RunContext, tmp_path: Path) -> None:
    home = tmp_path / "agent" / "home"
    with running_hub(context) as (host, port):
        agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                            env={PASSWORD_VARIABLE: SECRET})
        try:
            _wait(lambda: (home / "credential.json").exists(), "the agent to enroll")
            agent_id = json.loads((home / "credential.json").read_text())["agent_id"]
            revoked = ferry("agents", "revoke", str(agent_id), "--model", root)
            assert revoked.code == 0, revoked
            assert agent.wait(timeout=30) == 1  # refused at its next contact: it stops
            assert "revoked" in agent_log(home)
            # a restart of the revoked agent is refused too, and the job waits for another
            again = start_agent(f"http://{host}:{port}", home)
            assert again.wait(timeout=30) == 1
            ran = ferry("run", "crm.customers", "--model", root, "--agent-wait", "1s")
            assert ran.code == 1 and "none is enrolled" in ran.err
        finally:
            stop(agent)


def test_an_upload_whose_bytes_do_not_match_its_hash_is_refused(
        ferry: Callable[..., Result], root: Path, context: RunContext, tmp_path: Path) -> None:
    from dataferry.agent.client import HubClient

    with running_hub(context) as (host, port):
        client = HubClient(f"http://{host}:{port}", Identity(tmp_path / "fake-agent"))
        client.register(_enroll(ferry, root), "test")
        queued = AgentJobs(context.metadata).submit("ingest:crm.customers", "hq-lan",
                                                    "ingest", {})
        job = client.poll(0)
        assert job is not None and job["id"] == queued.id
        refused = httpx.put(
            f"http://{host}:{port}/api/v1/agent/jobs/{job['id']}/files/part-00000.parquet",
            params={"attempt": 1}, content=b"not what was announced",
            headers={"Authorization": f"Bearer {client.enrolled.credential}",  # type: ignore[union-attr]
                     "X-Ferry-Sha256": "0" * 64})
        assert refused.status_code == 400 and "refused" in refused.text
        assert not list((context.store.home / "agent-uploads").rglob("*.parquet"))
        # a user's API token is no agent credential
        answer = httpx.post(f"http://{host}:{port}/api/v1/agent/poll", json={"timeout": 0},
                            headers={"Authorization": "Bearer fy_whatever"})
        assert answer.status_code == 401
        client.close()


def test_an_agent_killed_mid_job_is_replaced_and_the_data_published_once(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    root = write_model(tmp_path / "model", pg, read="table: slow_customers")
    context = context_of(root)
    home = tmp_path / "agent" / "home"
    try:
        with running_hub(context, lease_seconds=3) as (host, port):
            hub = f"http://{host}:{port}"
            agent = start_agent(hub, home, token=_enroll(ferry, root),
                                env={PASSWORD_VARIABLE: SECRET})
            log = tmp_path / "run.log"
            with log.open("wb") as output:
                run = subprocess.Popen(
                    [str(Path(sys.executable).parent / "ferry"), "run", "crm.customers",
                     "crm.mirror", "--model", str(root), "--agent-wait", "60s"],
                    stdout=output, stderr=subprocess.STDOUT)
            queue = AgentJobs(context.metadata)
            try:
                _wait(lambda: (queue.get(1) or _Never).state == "running",
                      "the agent to take the job")
                agent.send_signal(signal.SIGKILL)  # mid-job: the source sleeps 6 s
                agent.wait(timeout=10)
                time.sleep(4)  # its lease (3 s) runs out
                agent = start_agent(hub, home, env={PASSWORD_VARIABLE: SECRET})
                assert run.wait(timeout=120) == 0, (log.read_text(), agent_log(home))
            finally:
                stop(agent)
                stop(run)
        job = queue.get(1)
        assert job is not None and (job.state, job.attempt) == ("done", 2)
        dataset = context.store.dataset("crm.customers")
        assert [v.number for v in dataset.versions()] == [1]  # published once
        assert _mirror_rows(root) == [(1, "ada"), (2, "grace"), (3, "edsger")]
        runs = RunHistory(context.metadata)
        run_row = runs.last_run("ingest:crm.customers")
        assert run_row is not None
        lines = _log_of(runs, run_row.id)
        assert any("left it (vanished or revoked)" in line for line in lines), lines
        assert any("took it (attempt 2)" in line for line in lines), lines
    finally:
        context.close()


def _log_of(runs: RunHistory, run_id: int) -> list[str]:
    detail = runs.get_run(run_id)
    assert detail is not None
    return [line.message for line in detail.log]


class _Never:
    state = "never"
    agent_id = None


def _wait(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_delivery_to_a_sink_in_the_network_is_applied_by_the_agent_once(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    with temporary_database() as branch:
        root = write_model(tmp_path / "model", pg, inside_sink=branch)
        context = context_of(root)
        home = tmp_path / "agent" / "home"
        try:
            with running_hub(context) as (host, port):
                agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                                    env={PASSWORD_VARIABLE: SECRET})
                try:
                    ran = ferry("run", "crm.branch", "--model", root, "--agent-wait", "60s",
                                "--json")
                    assert ran.code == 0, (ran, agent_log(home))
                    assert {r["job"]: (r["status"], r["rows"]) for r in json.loads(ran.out)} == {
                        "ingest:crm.customers": ("succeeded", 3),
                        "deliver:crm.branch:customers": ("succeeded", 3)}
                    again = ferry("run", "crm.branch", "--model", root, "--json")
                    assert {r["job"]: r["status"] for r in json.loads(again.out)} == {
                        "ingest:crm.customers": "unchanged",
                        "deliver:crm.branch:customers": "unchanged"}
                    with psycopg.connect(pg, autocommit=True) as db:
                        db.execute("update customers set name = 'Ada' where id = 1")
                    changed = ferry("run", "crm.branch", "--model", root, "--json")
                    assert [r["rows"] for r in json.loads(changed.out)] == [1, 1], changed
                finally:
                    stop(agent)
            with psycopg.connect(branch) as db:
                assert db.execute("select id, name from customers order by id").fetchall() == [
                    (1, "Ada"), (2, "grace"), (3, "edsger")]
                assert db.execute("select dataset, version from _ferry_loads").fetchall() == [
                    ("crm.customers", 2)]
            # the agent's own clone verifies, and only it holds the dataset outside the hub
            assert (home / "store").is_dir()
            assert _files_holding(root, SECRET.encode()) == []
        finally:
            context.close()


def test_a_masked_need_reaches_a_sink_in_the_network_derived_on_the_hub(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    with temporary_database() as branch:
        root = write_model(tmp_path / "model", pg, inside_sink=branch)
        team = root / "teams" / "crm" / "crm.yaml"
        team.write_text(team.read_text().replace(  # the same need, on the hub and inside
            "{ref: crm.customers, mode: merge}",
            "{ref: crm.customers, mode: merge, mask: [name]}"))
        context = context_of(root)
        home = tmp_path / "agent" / "home"

        def branch_rows() -> list[tuple[Any, ...]]:
            with psycopg.connect(branch) as db:
                return db.execute("select id, name from customers order by id").fetchall()

        try:
            with running_hub(context) as (host, port):
                agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                                    env={PASSWORD_VARIABLE: SECRET})
                try:
                    ran = ferry("run", "crm.mirror", "crm.branch", "--model", root,
                                "--agent-wait", "60s", "--json")
                    assert ran.code == 0, (ran, agent_log(home))
                    assert {r["job"]: (r["status"], r["rows"]) for r in json.loads(ran.out)} == {
                        "ingest:crm.customers": ("succeeded", 3),
                        "deliver:crm.mirror:customers": ("succeeded", 3),
                        "deliver:crm.branch:customers": ("succeeded", 3)}
                    hub_side = _mirror_rows(root)
                    assert branch_rows() == hub_side  # the same keyed hashes, byte for byte
                    assert [n for _, n in hub_side] != ["ada", "grace", "edsger"]
                    assert len({n for _, n in hub_side}) == 3
                    with psycopg.connect(pg, autocommit=True) as db:
                        db.execute("update customers set name = 'Ada' where id = 1")
                        db.execute("delete from customers where id = 3")
                    changed = ferry("run", "crm.mirror", "crm.branch", "--model", root, "--json")
                    assert [r["rows"] for r in json.loads(changed.out)][1:] == [2, 2], changed
                    assert branch_rows() == _mirror_rows(root) and len(branch_rows()) == 2
                    assert branch_rows()[0][1] not in (hub_side[0][1], "Ada")
                    again = ferry("run", "crm.branch", "--model", root, "--json")
                    assert {r["job"]: r["status"] for r in json.loads(again.out)} == {
                        "ingest:crm.customers": "unchanged",
                        "deliver:crm.branch:customers": "unchanged"}
                    # the agent may not clone what it only gets masked
                    credential = json.loads((home / "credential.json").read_text())["credential"]
                    refused = httpx.get(f"http://{host}:{port}/api/v1/replication/crm.customers"
                                        "/head", headers={"Authorization": f"Bearer {credential}"})
                    assert refused.status_code == 403, refused.text
                finally:
                    stop(agent)
            with psycopg.connect(branch) as db:
                assert db.execute("select dataset, version from _ferry_loads").fetchall() == [
                    ("crm.customers", 2)]
            # nothing unmasked, and no key, ever reached the agent's machine
            for value in (b"grace", b"edsger", b"Ada"):
                assert _files_holding(home.parent, value) == []
            assert not (home / "store" / "crm").exists()
            assert not (context.store.home / "agent-downloads").exists() or list(
                (context.store.home / "agent-downloads").iterdir()) == []
        finally:
            context.close()


def test_a_masked_history_need_in_the_network_gets_each_version_as_its_own_step(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    with temporary_database() as branch:
        root = write_model(tmp_path / "model", pg, inside_sink=branch)
        team = root / "teams" / "crm" / "crm.yaml"
        team.write_text(team.read_text().replace(
            "{ref: crm.customers, mode: merge}",
            "{ref: crm.customers, mode: history, mask: [name]}"))
        context = context_of(root)
        home = tmp_path / "agent" / "home"
        query = ("select id, name, valid_to is null from customers "
                 "order by id, valid_from")
        try:
            with running_hub(context) as (host, port):
                agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                                    env={PASSWORD_VARIABLE: SECRET})
                try:
                    first = ferry("run", "crm.mirror", "crm.branch", "--model", root,
                                  "--agent-wait", "60s")
                    assert first.code == 0, (first, agent_log(home))
                    for change in ("update customers set name = 'Ada' where id = 1",
                                   "update customers set name = 'ADA' where id = 1"):
                        with psycopg.connect(pg, autocommit=True) as db:
                            db.execute(change)
                        ingested = ferry("run", "crm.customers", "--model", root)
                        assert ingested.code == 0, ingested
                    ran = ferry("run", "crm.mirror", "crm.branch", "--model", root,
                                "--agent-wait", "60s", "--json")
                    assert ran.code == 0, (ran, agent_log(home))
                finally:
                    stop(agent)
            with psycopg.connect(branch) as db:
                inside = db.execute(query).fetchall()
                loads = db.execute("select dataset, version from _ferry_loads").fetchall()
            with duckdb.connect(str(root / "out" / "mirror.duckdb"), read_only=True) as db:
                assert inside == db.execute(query).fetchall()  # the hub-side sink's history
            assert [(i, current) for i, _, current in inside] == [
                (1, False), (1, False), (1, True), (2, True), (3, True)]
            assert len({name for i, name, _ in inside if i == 1}) == 3  # each version's hash
            assert loads == [("crm.customers", 3)]
            assert any("derived 2 masked step(s) from version 1 to 3" in line for line in _log_of(
                RunHistory(context.metadata), json.loads(ran.out)[-1]["run"]))
        finally:
            context.close()


def test_check_connect_asks_the_networks_agent(
        ferry: Callable[..., Result], root: Path, context: RunContext, tmp_path: Path,
        pg: str) -> None:
    def findings() -> list[tuple[str, str, str]]:
        checked = ferry("check", "--connect", "--json", "--model", root)
        return [(f["code"], f["severity"], f["message"])
                for f in json.loads(checked.out)["findings"] if "crm.customers" in f["message"]]

    [(code, severity, message)] = findings()  # no agent yet: said, not failed
    assert (code, severity) == ("unreachable", "warning") and "no agent is enrolled" in message
    home = tmp_path / "agent" / "home"
    with running_hub(context) as (host, port):
        agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                            env={PASSWORD_VARIABLE: SECRET})
        try:
            assert findings() == []  # the agent reached it: the columns match
            with psycopg.connect(pg, autocommit=True) as db:
                db.execute("alter table customers drop column name cascade")
            [(code, severity, message)] = findings()
            assert (code, severity) == ("schema-mismatch", "error") and "name" in message
        finally:
            stop(agent)


def test_an_ingest_larger_than_the_servers_body_limit_is_uploaded(
        ferry: Callable[..., Result], root: Path, context: RunContext, tmp_path: Path,
        pg: str) -> None:
    with psycopg.connect(pg, autocommit=True) as db:
        db.execute("insert into customers select g, md5(g::text) || md5((g * 7)::text) "
                   "from generate_series(4, 100003) g")
    home = tmp_path / "agent" / "home"
    with running_hub(context) as (host, port):
        agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                            env={PASSWORD_VARIABLE: SECRET})
        try:
            ran = ferry("run", "crm.customers", "--model", root, "--agent-wait", "60s",
                        "--json")
            assert ran.code == 0, (ran, agent_log(home))
        finally:
            stop(agent)
    head = context.store.dataset("crm.customers").head()
    assert head is not None and head.manifest.rows == 100_003
    assert "uploaded 1 file(s)" in " ".join(_log_of(RunHistory(context.metadata), json.loads(
        ran.out)[0]["run"]))


def test_files_roll_over_at_their_row_limit(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataferry.agent import work

    monkeypatch.setattr(work, "FILE_ROWS", 10)
    batches = [pa.record_batch({"id": list(range(i, i + 4))}) for i in range(0, 24, 4)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    written = list(work._write_files(reader, tmp_path))
    assert [rows for _, rows in written] == [12, 12]
    assert [pq.read_table(path)["id"].to_pylist() for path, _ in written] == [
        list(range(12)), list(range(12, 24))]
    empty = pa.RecordBatchReader.from_batches(batches[0].schema, iter([]))
    (tmp_path / "e").mkdir()
    [(path, rows)] = list(work._write_files(empty, tmp_path / "e"))
    assert rows == 0 and pq.read_table(path).num_rows == 0


def test_the_scheduler_of_ferry_serve_sends_network_jobs_to_the_agent(
        ferry: Callable[..., Result], root: Path, context: RunContext, tmp_path: Path) -> None:
    home = tmp_path / "agent" / "home"
    token = _enroll(ferry, root)
    with running_hub(context, scheduler=True) as (host, port):
        agent = start_agent(f"http://{host}:{port}", home, token=token,
                            env={PASSWORD_VARIABLE: SECRET})
        try:
            _wait(lambda: (root / "out" / "mirror.duckdb").exists()
                  and _loaded(root), "the scheduler's ingest and delivery", seconds=120)
        finally:
            stop(agent)
    assert _mirror_rows(root) == [(1, "ada"), (2, "grace"), (3, "edsger")]
    run = RunHistory(context.metadata).last_run("ingest:crm.customers")
    assert run is not None and (run.status, run.trigger) == ("succeeded", "freshness")


def _loaded(root: Path) -> bool:
    try:
        return len(_mirror_rows(root)) == 3
    except duckdb.Error:
        return False


def test_a_job_in_flight_on_a_revoked_agent_is_run_by_another(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    root = write_model(tmp_path / "model", pg, read="table: slow_customers")
    context = context_of(root)
    first, second = tmp_path / "agent" / "first", tmp_path / "agent" / "second"
    try:
        with running_hub(context) as (host, port):
            hub = f"http://{host}:{port}"
            revoked = start_agent(hub, first, token=_enroll(ferry, root),
                                  env={PASSWORD_VARIABLE: SECRET})
            log = tmp_path / "run.log"
            with log.open("wb") as output:
                run = subprocess.Popen(
                    [str(Path(sys.executable).parent / "ferry"), "run", "crm.customers",
                     "--model", str(root), "--agent-wait", "60s"],
                    stdout=output, stderr=subprocess.STDOUT)
            queue = AgentJobs(context.metadata)
            other = None
            try:
                _wait(lambda: (queue.get(1) or _Never).state == "running",
                      "the first agent to take the job")
                holder = (queue.get(1) or _Never).agent_id
                assert ferry("agents", "revoke", str(holder), "--model", root).code == 0
                other = start_agent(hub, second, token=_enroll(ferry, root),
                                    env={PASSWORD_VARIABLE: SECRET})
                assert run.wait(timeout=120) == 0, (log.read_text(), agent_log(second))
                assert revoked.wait(timeout=30) == 1  # refused at its next contact
            finally:
                stop(revoked)
                stop(run)
                if other is not None:
                    stop(other)
        job = queue.get(1)
        assert job is not None and (job.state, job.attempt) == ("done", 2)
        assert job.agent_id != holder
        assert [v.number for v in context.store.dataset("crm.customers").versions()] == [1]
    finally:
        context.close()


def test_a_job_whose_ferry_run_was_killed_is_dropped_and_ferry_up_publishes_it_once(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    from datetime import timedelta

    from dataferry.broker.scheduler import Scheduler
    from dataferry.metadata.clock import utcnow

    root = write_model(tmp_path / "model", pg, read="table: slow_customers")
    context = context_of(root)
    home = tmp_path / "agent" / "home"
    uploads = context.store.home / "agent-uploads"
    try:
        with running_hub(context, lease_seconds=3) as (host, port):
            agent = start_agent(f"http://{host}:{port}", home, token=_enroll(ferry, root),
                                env={PASSWORD_VARIABLE: SECRET})
            queue = AgentJobs(context.metadata)
            try:
                with (tmp_path / "run.log").open("wb") as output:
                    run = subprocess.Popen(
                        [str(Path(sys.executable).parent / "ferry"), "run", "crm.customers",
                         "--model", str(root), "--agent-wait", "60s"],
                        stdout=output, stderr=subprocess.STDOUT)
                _wait(lambda: (queue.get(1) or _Never).state == "running",
                      "the agent to take the job")
                run.send_signal(signal.SIGKILL)  # the process that would publish it is gone
                run.wait(timeout=10)
                killed = RunHistory(context.metadata).last_run("ingest:crm.customers")
                assert killed is not None and killed.status == "running"
                # ferry up, once the killed run's lease (300 s) has run out: its scheduler
                # declares the run abandoned and runs the job again
                scheduler = Scheduler(context_of(root), workers=1,
                                      now=lambda: utcnow() + timedelta(hours=1))
                try:
                    scheduler.tick()
                    _wait(lambda: (queue.get(1) or _Never).state == "cancelled",
                          "the hub to take the job back from the agent")
                    scheduler.wait()
                    scheduler.run_until_idle()
                finally:
                    scheduler.close()
                    scheduler.context.close()
            finally:
                stop(agent)
        assert "ingest:crm.customers: lost" in agent_log(home)  # its upload was refused
        assert [v.number for v in context.store.dataset("crm.customers").versions()] == [1]
        assert (queue.get(1) or _Never).state == "cancelled"
        assert (queue.get(2) or _Never).state == "done"
        assert queue.get(3) is None  # one retry, published once
        runs = RunHistory(context.metadata)
        abandoned = runs.get_run(killed.id)
        assert abandoned is not None and abandoned.status == "failed"
        retry = runs.last_run("ingest:crm.customers")
        assert retry is not None and (retry.status, retry.trigger) == ("succeeded", "retry")
        assert not uploads.exists() or list(uploads.iterdir()) == []
    finally:
        context.close()
