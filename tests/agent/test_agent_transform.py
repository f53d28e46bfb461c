"""SQL transformers on a platform in a private network run on its agent: the agent clones
the inputs at the versions the hub pinned (every byte verified), runs the SQL, uploads
the output; the hub publishes and signs it with its lineage and definition. What an
agent cannot run (Python, masks) is a ``ferry check`` finding, not a failed run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

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
from tests.conftest import Result, write_files
from tests.connectors.pg_helpers import temporary_database

SECRET = "s3cret-for-the-transform-agent-2b9d"
TRANSFORMER = """
transformers:
  loud_names:
    platform: hq
    inputs: [crm.customers]
    primary_key: [id]
    sql: {sql}
    columns:
      id: {{type: int64, nullable: false}}
      name: {{type: string}}
"""


@pytest.fixture
def pg() -> Iterator[str]:
    with temporary_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("create table customers (id bigint primary key, name text)")
            db.execute("insert into customers values (1, 'ada'), (2, 'grace'), (3, 'edsger')")
        yield dsn


def _with_transformer(root: Path, sql: str) -> None:
    team = root / "teams" / "crm" / "crm.yaml"
    text = team.read_text().split("\ntransformers:")[0]
    team.write_text(text + TRANSFORMER.format(sql=sql))


def _rows(context: RunContext, ref: str) -> list[tuple[object, ...]]:
    dataset = context.store.dataset(ref)
    head = dataset.head()
    assert head is not None
    table = dataset.reader(head).read_all().sort_by("id")
    return list(zip(*(table.column(c).to_pylist() for c in ("id", "name")), strict=True))


def test_a_sql_transformer_in_the_network_runs_on_the_agent(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    assert PASSWORD_VARIABLE not in os.environ
    root = write_model(tmp_path / "model", pg)
    _with_transformer(root, "select id, upper(name) as name from customers")
    assert ferry("check", "--model", root).code == 0
    context = context_of(root)
    home = tmp_path / "agent" / "home"
    try:
        with running_hub(context) as (host, port):
            token = json.loads(ferry("agents", "enroll", "hq-lan", "--json", "--model",
                                     root).out)["token"]
            agent = start_agent(f"http://{host}:{port}", home, token=token,
                                env={PASSWORD_VARIABLE: SECRET})
            try:
                ran = ferry("run", "crm.loud_names", "--model", root, "--agent-wait", "60s",
                            "--json")
                assert ran.code == 0, (ran, agent_log(home))
                assert {r["job"]: (r["status"], r["rows"]) for r in json.loads(ran.out)} == {
                    "ingest:crm.customers": ("succeeded", 3),
                    "transform:crm.loud_names": ("succeeded", 3)}
                assert _rows(context, "crm.loud_names") == [
                    (1, "ADA"), (2, "GRACE"), (3, "EDSGER")]
                head = context.store.dataset("crm.loud_names").head()
                assert head is not None
                assert [(i["ref"], i["version"]) for i in head.manifest.lineage] == [
                    ("crm.customers", 1)]
                runs = RunHistory(context.metadata)
                run = runs.last_run("transform:crm.loud_names")
                assert run is not None
                detail = runs.get_run(run.id)
                assert detail is not None
                lines = [line.message for line in detail.log]
                assert "waiting for an agent of hq-lan" in lines
                assert any("took it (attempt 1)" in line for line in lines)
                # nothing new: decided on the hub, no agent asked
                again = ferry("run", "crm.loud_names", "--model", root, "--json")
                assert {r["job"]: r["status"] for r in json.loads(again.out)} == {
                    "ingest:crm.customers": "unchanged",
                    "transform:crm.loud_names": "unchanged"}
                # a new input version and a changed definition both make it run there again
                with psycopg.connect(pg, autocommit=True) as db:
                    db.execute("update customers set name = 'Ada L.' where id = 1")
                _with_transformer(root, "select id, upper(name) || '!' as name from customers")
                context.close()
                context = context_of(root)
                changed = ferry("run", "crm.loud_names", "--model", root, "--json")
                assert changed.code == 0, (changed, agent_log(home))
                [transform] = [r for r in json.loads(changed.out)
                               if r["job"] == "transform:crm.loud_names"]
                assert transform["status"] == "succeeded"
                assert "new input versions: crm.customers 2" in transform["message"]
                assert "SQL changed" in transform["message"]
                assert _rows(context, "crm.loud_names") == [
                    (1, "ADA L.!"), (2, "GRACE!"), (3, "EDSGER!")]
            finally:
                stop(agent)
        assert ferry("verify", "--model", root).code == 0  # signed on the hub
        orphan = context.store.home / "agent-uploads" / "999" / "1" / "part-00000.parquet"
        orphan.parent.mkdir(parents=True)  # of a job the queue does not have
        orphan.write_bytes(b"x" * 2048)
        swept = ferry("gc", "--model", root)
        assert swept.code == 0, swept
        assert "agent uploads: removed those of 1 job(s) never published" in swept.out
        assert not orphan.exists()
        clones = {p.relative_to(home / "store").as_posix() for p in (home / "store").glob("*/*")}
        assert clones == {"crm/customers"}  # the input, cloned; the output lives on the hub
        assert [p for p in root.rglob("*") if p.is_file() and SECRET.encode()
                in p.read_bytes()] == []
    finally:
        context.close()


def test_an_agent_may_clone_only_what_its_networks_jobs_read(
        ferry: Callable[..., Result], tmp_path: Path) -> None:
    """The grant follows the model: a transformer's inputs in the network, nothing else."""
    from dataferry.agent.access import agent_grant
    from dataferry.model.graph import ModelIndex
    from dataferry.model.load import load_model
    from dataferry.server.errors import Forbidden

    root = write_model(tmp_path / "model", "postgresql://reader@erp.internal/erp")
    _with_transformer(root, "select id, name from customers")
    index = ModelIndex(load_model(root).ecosystem)  # type: ignore[arg-type]
    assert "transformer crm.loud_names runs in network hq-lan" in agent_grant(
        index, "hq-lan", "crm.customers")
    with pytest.raises(Forbidden):
        agent_grant(index, "other-lan", "crm.customers")
    with pytest.raises(Forbidden):
        agent_grant(index, "hq-lan", "crm.loud_names")  # its output: the hub's


PYTHON_TEAM = """\
team: lab
zone: eu
owners: [lab@acme.example]
transformers:
  scored:
    platform: hq
    inputs: [crm.customers]
    python: scoring:score
    primary_key: [id]
    columns:
      id: {type: int64, nullable: false}
  hashed:
    platform: hq
    inputs: [crm.customers]
    mask: {crm.customers: [name]}
    primary_key: [id]
    sql: select id, name from customers
    columns:
      id: {type: int64, nullable: false}
      name: {type: string}
consumers:
  branch:
    sink: {kind: postgres, network: hq-lan, dsn: "postgresql://w@db.hq.internal/branch"}
    datasets:
      - {ref: crm.customers, mode: merge, mask: [name]}
"""


def test_check_refuses_what_an_agent_cannot_run(
        ferry: Callable[..., Result], tmp_path: Path) -> None:
    root = write_model(tmp_path / "model", "postgresql://reader@erp.internal/erp")
    write_files(root, {"teams/lab/lab.yaml": PYTHON_TEAM,
                       "teams/lab/scoring.py": "def score(t):\n    return t\n"})
    checked = ferry("check", "--json", "--model", root)
    assert checked.code == 1
    found = [(f["code"], f["file"], f["message"]) for f in json.loads(checked.out)["findings"]
             if f["code"] == "agent-unsupported"]
    messages = "\n".join(m for _, _, m in found)
    assert len(found) == 2, found
    assert {file for _, file, _ in found} == {"teams/lab/lab.yaml"}
    assert "transformer lab.scored is Python (scoring:score)" in messages
    assert "transformer lab.hashed runs in network hq-lan and gets columns of crm.customers " \
           "masked" in messages
    # a masked need to a sink in the network is delivered (derived on the hub)
    assert "lab.branch" not in messages


def test_an_agent_may_not_clone_what_it_only_gets_masked_or_never_runs(
        tmp_path: Path) -> None:
    """A masked need (derived on the hub), a transformer that gets the input masked and a
    Python transformer (neither runs on an agent) grant no clone of the raw dataset."""
    from dataferry.agent.access import agent_grant
    from dataferry.model.graph import ModelIndex
    from dataferry.model.load import load_model
    from dataferry.server.errors import Forbidden

    root = write_model(tmp_path / "model", "postgresql://reader@erp.internal/erp")
    write_files(root, {"teams/lab/lab.yaml": PYTHON_TEAM,
                       "teams/lab/scoring.py": "def score(t):\n    return t\n"})
    index = ModelIndex(load_model(root).ecosystem)  # type: ignore[arg-type]
    with pytest.raises(Forbidden):
        agent_grant(index, "hq-lan", "crm.customers")
    unmasked = PYTHON_TEAM.replace("mode: merge, mask: [name]}", "mode: merge}")
    write_files(root, {"teams/lab/lab.yaml": unmasked})
    index = ModelIndex(load_model(root).ecosystem)  # type: ignore[arg-type]
    assert "consumer lab.branch" in agent_grant(index, "hq-lan", "crm.customers")


def test_check_connect_asks_the_agent_about_a_sink_in_the_network(
        ferry: Callable[..., Result], tmp_path: Path, pg: str) -> None:
    def sink_findings() -> list[tuple[str, str, str]]:
        checked = ferry("check", "--connect", "--json", "--model", root)
        return [(f["code"], f["severity"], f["message"])
                for f in json.loads(checked.out)["findings"] if "crm.branch" in f["message"]]

    with temporary_database() as branch:
        root = write_model(tmp_path / "model", pg, inside_sink=branch)
        [(code, severity, message)] = sink_findings()  # no agent yet: said, not failed
        assert (code, severity) == ("unreachable", "warning")
        assert "its sink is only reachable in network hq-lan, and no agent is enrolled" in message
        context = context_of(root)
        home = tmp_path / "agent" / "home"
        try:
            with running_hub(context) as (host, port):
                token = json.loads(ferry("agents", "enroll", "hq-lan", "--json", "--model",
                                         root).out)["token"]
                agent = start_agent(f"http://{host}:{port}", home, token=token,
                                    env={PASSWORD_VARIABLE: SECRET})
                try:
                    assert sink_findings() == []  # the agent opened it
                    with psycopg.connect(pg, autocommit=True) as db:  # the sink goes away
                        db.execute(f"drop database if exists {branch.rsplit('/', 1)[1]} "
                                   "with (force)")
                    [(code, severity, message)] = sink_findings()
                    assert (code, severity) == ("unreachable", "warning")
                    assert "the agent of hq-lan cannot reach its sink" in message
                    assert SECRET not in message
                finally:
                    stop(agent)
        finally:
            context.close()
