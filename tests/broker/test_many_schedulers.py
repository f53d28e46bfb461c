"""Many schedulers on one metadata database, one of them SIGKILLed every few seconds.

Issue 19: ``ferry up`` on several machines sharing one PostgreSQL and one S3 store. Three
``ferry up`` processes, each a machine of its own (its own ``FERRY_HOME``: its own S3
mirror, locks and work files; the same keys, metadata DSN and store), run a model of
SQLite and PostgreSQL sources on schedules of a few seconds, a transformer, and
PostgreSQL and SQLite sinks (``merge``, ``append``, ``replace``) while the sources keep
changing. For about a minute one scheduler at random is SIGKILLed every 2 to 5 seconds
and started again (half the time one that is running a job at that moment). Then, with the
sources still, the three run until everything is delivered, stop, and the test checks
from the run history, the store and the sinks:

- **each job ran once per due time.** A job's runs, in the order they started, fall into
  *due times*: a run started by its trigger opens one; the attempts after a transient
  error (``attempt`` > 1) and the retries of a run whose process died (trigger
  ``retry``, right after an ``abandoned`` run) belong to it. A due time has at most one
  run that succeeded (``succeeded`` or ``unchanged``), its last. A cron job's due time
  opens no sooner than the next time its expression names after the previous run
  started; a freshness ingest's no sooner than its interval after the previous counted
  run. No two runs of one job overlap in time (the lease).
- **no version is doubled.** Every dataset's chain is 1..N and verifies; no two
  transform versions were computed from the same input versions; no version was written
  by two runs, and a version no run recorded (its process died after the commit) has an
  abandoned run to account for it.
- **no delivery is applied twice.** No two successful deliveries of one need sent the
  same version; every sink's ``_ferry_loads`` names the store's head and its rows are
  the head's rows (the ``append`` table has each event once).
- **no lease is lost.** No run is left ``running``; every job a killed process was
  running ran again within a lease and a few ticks of the kill (the longest wait is
  printed).

The kills are seeded (``FERRY_CHAOS_SEED`` replays a run); a failure prints the seed and
the kill schedule. ``bench/chaos.py`` is something else: faults injected into single runs.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from croniter import croniter

from dataferry.metadata import CONSUMED, Run, RunHistory, abandoned, open_metadata
from dataferry.model.load import load_model
from dataferry.store.store import Store
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.conftest import write_files
from tests.connectors.pg_helpers import temporary_database
from tests.store.test_s3_store import S3Server, s3_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

SCHEDULERS = 3
CHAOS_SECONDS = float(os.environ.get("FERRY_CHAOS_SECONDS", "60"))
LEASE = 8.0
TICK = 1.0
SETTLE_SECONDS = 90.0
"""How long the schedulers get, after the chaos, to deliver the last changes."""

ORDERS_CRON = "* * * * * */3"
CUSTOMERS_CRON = "* * * * * */4"
EVENTS_EVERY = timedelta(seconds=3)  # half the 6 s freshness the warehouse asks for

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  lite:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        schedule: "{orders_cron}"
        columns:
          id: {{type: int64, nullable: false}}
          customer: {{type: int64, nullable: false}}
          amount: {{type: decimal(12,2), nullable: false}}
          updated_at: {{type: timestamp_tz, nullable: false}}
      customers:
        table: customers
        primary_key: [id]
        schedule: "{customers_cron}"
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string, nullable: false}}
  pg:
    kind: postgres
    dsn: "{data}"
    datasets:
      events:
        table: src.events
        capture: incremental
        cursor: id
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          what: {{type: string, nullable: false}}
transformers:
  totals:
    inputs: [shop.orders, shop.customers]
    sql: >
      select c.id as customer, c.name, count(o.id) as orders,
             cast(coalesce(sum(o.amount), 0) as decimal(18,2)) as total
      from customers c left join orders o on o.customer = c.id
      group by c.id, c.name
    primary_key: [customer]
    columns:
      customer: {{type: int64, nullable: false}}
      name: {{type: string, nullable: false}}
      orders: {{type: int64, nullable: false}}
      total: {{type: decimal(18,2), nullable: false}}
consumers:
  warehouse:
    sink: {{kind: postgres, dsn: "{data}", schema: wh}}
    datasets:
      - {{ref: shop.orders, mode: merge}}
      - {{ref: shop.events, mode: append, freshness: 6s}}
      - {{ref: shop.totals, mode: merge}}
  lite:
    sink: {{kind: sqlite, path: out/lite.db}}
    datasets:
      - {{ref: shop.customers, mode: merge}}
      - {{ref: shop.totals}}
"""

DATASETS = ["shop.orders", "shop.customers", "shop.events", "shop.totals"]
SINKS = {  # delivery job -> (sink, table, dataset, key column)
    "deliver:shop.warehouse:orders": ("pg", "wh.orders", "shop.orders", "id"),
    "deliver:shop.warehouse:events": ("pg", "wh.events", "shop.events", "id"),
    "deliver:shop.warehouse:totals": ("pg", "wh.totals", "shop.totals", "customer"),
    "deliver:shop.lite:customers": ("lite", "customers", "shop.customers", "id"),
    "deliver:shop.lite:totals": ("lite", "totals", "shop.totals", "customer"),
}
CRON = {"ingest:shop.orders": ORDERS_CRON, "ingest:shop.customers": CUSTOMERS_CRON}


@dataclass
class Machine:
    """One ``ferry up`` on a machine of its own: its home, its process, its output."""

    number: int
    home: Path
    root: Path
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"machine{self.number}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dataferry.cli", "up", "--tick", str(TICK),
             "--lease", str(LEASE), "--workers", "3", "--model", str(self.root)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.pids.append(self.process.pid)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"machine {self.number} did not stop on SIGTERM") \
                    from None


class Changes:
    """Keeps changing the sources from a thread, seeded: new, changed and touched orders
    (their ``updated_at`` always later than any before; a touched order keeps its amount,
    so ``shop.totals`` gets new input versions and the same rows), renamed and new
    customers, events."""

    def __init__(self, root: Path, data: str, seed: int) -> None:
        self.root, self.data = root, data
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.orders = 20
        self.customers = 5
        self.events = 10
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="changes", daemon=True)

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.isoformat()

    def create(self) -> None:
        with sqlite3.connect(self.root / "shop.db") as db:
            db.execute("create table orders (id integer primary key, customer integer not "
                       "null, amount text not null, updated_at text not null)")
            db.execute("create table customers (id integer primary key, name text not null)")
            db.executemany("insert into orders values (?, ?, ?, ?)",
                           [(i, i % self.customers + 1, f"{i}.50", self._tick())
                            for i in range(1, self.orders + 1)])
            db.executemany("insert into customers values (?, ?)",
                           [(i, f"customer {i}") for i in range(1, self.customers + 1)])
        db.close()
        with psycopg.connect(self.data, autocommit=True) as pg:
            pg.execute("create schema src")
            pg.execute("create table src.events (id bigint primary key, what text not null)")
            with pg.cursor() as cursor:
                cursor.executemany("insert into src.events values (%s, %s)",
                                   [(i, f"event {i}") for i in range(1, self.events + 1)])

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.random.uniform(0.2, 0.8)):
                self.change()
        except BaseException as error:  # reported by the test
            self.error = error

    def change(self) -> None:
        pick = self.random.random()
        if pick < 0.5:
            with sqlite3.connect(self.root / "shop.db", timeout=30) as db:
                if self.random.random() < 0.6:
                    self.orders += 1
                    db.execute("insert into orders values (?, ?, ?, ?)",
                               (self.orders, self.random.randint(1, self.customers),
                                f"{self.random.randint(1, 999)}.25", self._tick()))
                elif self.random.random() < 0.6:
                    db.execute("update orders set amount = ?, updated_at = ? where id = ?",
                               (f"{self.random.randint(1, 999)}.75", self._tick(),
                                self.random.randint(1, self.orders)))
                else:  # touched, not changed: a new orders version, the same totals
                    db.execute("update orders set updated_at = ? where id = ?",
                               (self._tick(), self.random.randint(1, self.orders)))
            db.close()
        elif pick < 0.65:
            with sqlite3.connect(self.root / "shop.db", timeout=30) as db:
                if self.random.random() < 0.5:
                    self.customers += 1
                    db.execute("insert into customers values (?, ?)",
                               (self.customers, f"customer {self.customers}"))
                else:
                    db.execute("update customers set name = ? where id = ?",
                               (f"renamed {self.random.randint(1, 10**6)}",
                                self.random.randint(1, self.customers)))
            db.close()
        else:
            with psycopg.connect(self.data, autocommit=True) as pg:
                self.events += 1
                pg.execute("insert into src.events values (%s, %s)",
                           (self.events, f"event {self.events}"))

    def __enter__(self) -> Changes:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        if self.error is not None:
            raise self.error


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """(metadata DSN, data DSN): two databases of the test's own, dropped after."""
    with temporary_database() as metadata, temporary_database() as data:
        yield metadata, data


def test_three_schedulers_killed_at_random_run_each_job_once(
        tmp_path: Path, s3_server: S3Server,  # noqa: F811
        databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    metadata, data = databases
    seed = int(os.environ.get("FERRY_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {seed} (FERRY_CHAOS_SEED={seed} replays the kills)")
    bucket = f"ferry-chaos-{uuid.uuid4().hex[:10]}"
    s3_server.client().create_bucket(Bucket=bucket)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    root = write_files(tmp_path / "model", {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nstore: s3://{bucket}/lake\n"
                      f"metadata: {metadata}\n",
        "teams/shop/shop.yaml": TEAM.format(data=data, orders_cron=ORDERS_CRON,
                                            customers_cron=CUSTOMERS_CRON),
    })
    changes = Changes(root, data, seed)
    changes.create()
    (root / "out").mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    machines = _machines(tmp_path, root, s3_server, logs)
    kills: list[tuple[float, int, int]] = []  # (seconds since start, machine, pid)
    runs: list[Run] = []
    began = time.monotonic()
    wall = datetime.now(UTC)
    try:
        try:
            for machine in machines:
                machine.start()
            chaos = random.Random(seed)
            with changes:
                while time.monotonic() - began < CHAOS_SECONDS:
                    time.sleep(chaos.uniform(2, 5))
                    victim = _victim(chaos, machines, metadata)
                    kills.append((round(time.monotonic() - began, 1), victim.number,
                                  victim.process.pid))
                    victim.kill()
                    victim.start()
            quiet = time.monotonic()
            monkeypatch.setenv("FERRY_HOME", str(tmp_path / "checker"))
            store = _store(root, tmp_path)
            behind = _settle(store, root, data, machines)
            settling = time.monotonic() - quiet
        finally:
            for machine in machines:
                machine.stop()
            with open_metadata(metadata) as db:
                runs = sorted(RunHistory(db).list_runs(limit=1_000_000), key=lambda r: r.id)
        assert behind is None, (f"the schedulers did not deliver the last changes in "
                                f"{SETTLE_SECONDS:.0f} s: {behind}")
        waits = _check_runs(runs, kills, wall)
        _check_store(store, runs)
        _check_sinks(store, root, data)
        hit = sum(1 for r in runs if abandoned(r))
        assert hit > 0, "no kill hit a running job: the chaos tested nothing"
        longest = max(waits.values(), default=0.0)
        print(f"{len(kills)} kills, {len(runs)} runs, {hit} abandoned; longest wait of a job "
              f"a killed scheduler held: {longest:.1f} s (lease {LEASE} s, tick {TICK} s); "
              f"settled {settling:.0f} s after the chaos; load {os.getloadavg()[0]:.1f}")
        # A lease, a tick, and room for a loaded machine: the other schedulers may be
        # starting up themselves, or busy with other jobs (a killed one held them 300 to
        # 600 s before leases were renewed and configurable).
        assert longest <= LEASE + 30, waits
    except BaseException:
        print(f"FAILED with FERRY_CHAOS_SEED={seed}; kills (s, machine, pid): {kills}")
        print("\n".join(f"{r.id} {r.job_id} {r.trigger} a{r.attempt} {r.status} "
                        f"{r.started_at:%H:%M:%S.%f} {r.worker} "
                        f"{[f'{v.ref}@{v.version}' for v in r.versions_read]} -> "
                        f"{[f'{v.ref}@{v.version}' for v in r.versions_written]} "
                        f"{r.error or ''}"[:300] for r in runs))
        for path in sorted(logs.iterdir()):
            print(f"--- {path.name}\n{path.read_text()[-3000:]}")
        raise


def _victim(chaos: random.Random, machines: list[Machine], metadata: str) -> Machine:
    """Whom to kill: half the time a scheduler that is running a job now (a kill while it
    starts up or idles tests little), else any; chosen by the seeded ``chaos``."""
    try:
        with psycopg.connect(metadata) as db:
            workers = {str(w) for (w,) in db.execute(
                "select worker from runs where status = 'running'").fetchall()}
    except psycopg.errors.UndefinedTable:
        workers = set()  # no scheduler has created the schema yet
    busy = [m for m in machines if m.process is not None
            and any(w.endswith(f":{m.process.pid}") for w in workers)]
    if busy and chaos.random() < 0.5:
        return chaos.choice(busy)
    return machines[chaos.randrange(SCHEDULERS)]


def _machines(tmp_path: Path, root: Path, s3: S3Server, logs: Path) -> list[Machine]:
    """Three machines sharing the keys (made once, as deploy.md says), each its home."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("FERRY_") or key == "FERRY_REQUIRE_SERVICES"}
    env.update(s3.env)
    first = tmp_path / "home1"
    made = subprocess.run([sys.executable, "-m", "dataferry.cli", "keys", "--generate",
                           "--model", str(root)], env={**env, "FERRY_HOME": str(first)},
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made
    machines = []
    for number in range(1, SCHEDULERS + 1):
        home = tmp_path / f"home{number}"
        if number > 1:
            shutil.copytree(first / "keys", home / "keys")
        machines.append(Machine(number, home, root, {**env, "FERRY_HOME": str(home)}, logs))
    return machines


def _store(root: Path, tmp_path: Path) -> Store:
    """The store as a fourth machine sees it (its own mirror)."""
    shutil.copytree(tmp_path / "home1" / "keys", tmp_path / "checker" / "keys")
    loaded = load_model(root)
    assert loaded.ecosystem is not None and loaded.report.ok, loaded.report.findings
    return Store.for_model(root, loaded.ecosystem)


def _settle(store: Store, root: Path, data: str, machines: list[Machine]) -> str | None:
    """Wait until the store holds the sources as they are and every sink the store's
    heads (the schedulers keep running, nobody is killed); returns what is still behind
    when the time is up (None: settled)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    behind: str | None = "nothing checked yet"
    while time.monotonic() < deadline:
        for machine in machines:
            assert machine.process is not None and machine.process.poll() is None, (
                f"machine {machine.number} exited: {machine.process.returncode}")
        try:
            behind = _behind(store, root, data)
        except (psycopg.Error, sqlite3.Error) as error:
            behind = f"a sink is not readable yet: {error}"  # a table not created yet
        if behind is None:
            return None
        time.sleep(1)
    return behind


def _behind(store: Store, root: Path, data: str) -> str | None:
    """What the store or a sink still lacks, or None."""
    stale = _sources_behind(store, root, data)
    if stale:
        return f"the store's {', '.join(stale)} differ from the sources"
    for job, (_, _, dataset, _) in SINKS.items():
        loaded, head = _ledger(root, data, job), store.dataset(dataset).head_number()
        if loaded != head:
            return f"{job} delivered version {loaded}, the head is {head}"
    if not _totals_current(store):
        return "shop.totals was not computed from the inputs' heads"
    return None


def _rows(store: Store, ref: str) -> set[tuple[Any, ...]]:
    dataset = store.dataset(ref)
    table = dataset.reader(dataset.resolve(None)).read_all()
    return {tuple(_plain(v) for v in row.values()) for row in table.to_pylist()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return value


def _sources_behind(store: Store, root: Path, data: str) -> list[str]:
    """The datasets whose head is not (yet) the source's rows."""
    with sqlite3.connect(root / "shop.db") as db:
        orders = {(i, c, f"{Decimal(a):.2f}", datetime.fromisoformat(u).isoformat())
                  for i, c, a, u in db.execute("select * from orders")}
        customers = set(db.execute("select id, name from customers"))
    db.close()
    with psycopg.connect(data) as pg:
        events = set(pg.execute("select id, what from src.events").fetchall())
    missing = [ref for ref in DATASETS if store.dataset(ref).head_number() is None]
    if missing:
        return missing
    return [ref for ref, rows in (("shop.orders", orders), ("shop.customers", customers),
                                  ("shop.events", events)) if _rows(store, ref) != rows]


def _totals_current(store: Store) -> bool:
    dataset = store.dataset("shop.totals")
    head = dataset.head_number()
    assert head is not None
    lineage = {str(i["ref"]): int(i["version"]) for i in dataset.version(head).manifest.lineage}
    return lineage == {ref: store.dataset(ref).head_number()
                       for ref in ("shop.orders", "shop.customers")}


def _sink_query(root: Path, data: str, sink: str, query: str) -> list[tuple[Any, ...]]:
    if sink == "pg":
        with psycopg.connect(data) as pg:
            return list(pg.execute(query.replace("_ferry_loads", "wh._ferry_loads"))
                        .fetchall())
    with sqlite3.connect(root / "out" / "lite.db", timeout=30) as db:
        found = list(db.execute(query).fetchall())
    db.close()
    return found


def _ledger(root: Path, data: str, job: str) -> int | None:
    sink, table, _, _ = SINKS[job]
    name = table.split(".")[-1]
    found = _sink_query(root, data, sink, "select version from _ferry_loads where "
                                          f"table_name = '{name}'")
    return int(found[0][0]) if found else None


def _due_times(runs: list[Run]) -> list[list[Run]]:
    """One job's runs (in the order they started) grouped by the due time they served."""
    groups: list[list[Run]] = []
    for run in runs:
        if groups and (run.attempt > 1 or run.trigger == "retry"):
            if run.trigger == "retry":
                assert abandoned(groups[-1][-1]), (
                    f"run {run.id} of {run.job_id} is a retry, but the run before it "
                    f"({groups[-1][-1].id}) was not abandoned")
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


def _check_runs(runs: list[Run], kills: list[tuple[float, int, int]],
                began: datetime) -> dict[str, float]:
    """Each job ran once per due time, never two runs at once, none left running; returns
    each killed job's wait (kill to its next run's start), in seconds."""
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    assert set(by_job) == {*CRON, "ingest:shop.events", "transform:shop.totals", *SINKS}
    for job, history in by_job.items():
        assert not [r.id for r in history if r.status == "running"], (
            f"{job} has runs left running: a lease was lost")
        for before, after in itertools.pairwise(history):
            ended = _ended(before)
            assert after.started_at >= ended, (
                f"{job}: run {after.id} started at {after.started_at}, before run "
                f"{before.id} ended ({ended})")
        groups = _due_times(history)
        for group in groups:
            counted = [r for r in group if r.status in CONSUMED]
            assert len(counted) <= 1, (
                f"{job} succeeded twice for one due time: runs {[r.id for r in counted]}")
            assert not counted or counted[0] is group[-1], group
        for index, (previous, group) in enumerate(itertools.pairwise(groups), start=1):
            opened = group[0].started_at
            if job in CRON:
                due = croniter(CRON[job], previous[-1].started_at).get_next(datetime)
                assert opened >= due, (
                    f"{job}: run {group[0].id} at {opened} before its due time {due}")
            elif job == "ingest:shop.events":
                counted = [r for g in groups[:index] for r in g
                           if r.status in CONSUMED]
                if counted:
                    due = counted[-1].started_at + EVENTS_EVERY
                    assert opened >= due, (
                        f"{job}: run {group[0].id} at {opened} before its due time {due}")
        if job in SINKS or job == "transform:shop.totals":
            read = [r.versions_read for r in history if r.status == "succeeded"]
            assert len(read) == len(set(read)), (
                f"{job} succeeded twice on the same versions: {read}")
    waits: dict[str, float] = {}
    for at, machine, pid in kills:
        killed_at = began + timedelta(seconds=at)
        for job, history in by_job.items():
            held = [r for r in history if r.worker.endswith(f":{pid}") and abandoned(r)]
            for run in held:
                later = [r for r in history if r.id > run.id]
                assert later, f"{job}: nothing ran after run {run.id} of killed pid {pid}"
                wait = (later[0].started_at - killed_at).total_seconds()
                waits[f"{job} (machine {machine}, run {run.id})"] = wait
    return waits


def _ended(run: Run) -> datetime:
    """When a run stopped: its end, or for one whose process died, when its lease expired
    (the lease it had when it was found dead, which its error says)."""
    assert run.ended_at is not None
    if abandoned(run):
        assert run.error is not None
        return datetime.fromisoformat(run.error.rsplit(" ", 1)[-1])
    return run.ended_at


def _check_store(store: Store, runs: list[Run]) -> None:
    """Gap-free, verified chains; no version written twice or computed twice."""
    written: dict[tuple[str, int], list[int]] = defaultdict(list)
    for run in runs:
        for version in run.versions_written:
            written[(version.ref, version.version)].append(run.id)
    died = defaultdict(int)
    for run in runs:
        if abandoned(run):
            died[run.job_id.partition(":")[2].split(":")[0]] += 1
    for ref in DATASETS:
        dataset = store.dataset(ref)
        numbers = dataset.version_numbers()
        assert numbers == list(range(1, len(numbers) + 1)), f"{ref}: a gap in {numbers}"
        report = VerifyReport()
        verify_dataset(dataset, report)
        assert report.ok, (ref, report.problems)
        orphans = [n for n in numbers if (ref, n) not in written]
        assert all(len(written[(ref, n)]) == 1 for n in numbers if (ref, n) in written), (
            ref, {n: written[(ref, n)] for n in numbers})
        assert len(orphans) <= died[ref], (
            f"{ref}: versions {orphans} were written by no recorded run, and only "
            f"{died[ref]} runs of it died")
        if ref == "shop.totals":
            lineages = [json.dumps(dataset.version(n).manifest.lineage, sort_keys=True)
                        for n in numbers]
            assert len(lineages) == len(set(lineages)), (
                f"{ref}: two versions computed from the same input versions")
        else:
            for number in numbers[1:]:
                manifest = dataset.version(number).manifest
                assert manifest.added_rows + manifest.removed_rows > 0, (
                    f"{ref}@{number} changes nothing: the same source read twice")


def _check_sinks(store: Store, root: Path, data: str) -> None:
    """Every sink holds its dataset's head, once."""
    for job, (sink, table, ref, key) in SINKS.items():
        head = store.dataset(ref).head_number()
        assert _ledger(root, data, job) == head, (job, head)
        rows = _rows(store, ref)
        columns = [c for c in store.dataset(ref).reader(
            store.dataset(ref).resolve(None)).read_all().column_names]
        found = _sink_query(root, data, sink, f"select {', '.join(columns)} from {table}")
        delivered = [tuple(_plain(_sink_value(v)) for v in row) for row in found]
        assert len(delivered) == len(set(delivered)), f"{job}: a row delivered twice"
        assert set(delivered) == rows, (job, sorted(set(delivered) ^ rows)[:10])
        keys = _sink_query(root, data, sink, f"select count(*), count(distinct {key}) "
                                             f"from {table}")
        assert keys[0][0] == keys[0][1] == len(rows), (job, keys)


def _sink_value(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 18 and value[10:11] in ("T", " "):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, float):
        return Decimal(str(value))
    return value
