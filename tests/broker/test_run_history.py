"""Every job `ferry run` runs is recorded in the metadata DB: status, rows, versions, log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataferry.broker import runner
from dataferry.broker.graph import Job, build_graph, select
from dataferry.broker.runner import JobResult, run_jobs
from dataferry.engine.context import RunContext
from dataferry.errors import TransientError
from dataferry.metadata import VersionRef, worker_name
from dataferry.model.load import load_model
from tests.broker.small_model import JOBS, history, make_shop
from tests.conftest import write_files


def test_every_job_is_recorded_with_rows_and_versions(tmp_path: Path,
                                                      ferry: Callable[..., Any]) -> None:
    root = make_shop(tmp_path / "model", rows=50)
    out = ferry("run", "--model", root, "--json")
    assert out.code == 0, out
    printed = {r["job"]: r["run"] for r in json.loads(out.out)}
    with history(root) as runs:
        found = {r.job_id: r for r in runs.list_runs()}
    assert sorted(found) == sorted(JOBS)
    assert {job: run.id for job, run in found.items()} == printed
    for run in found.values():
        assert (run.status, run.trigger, run.attempt, run.error) == ("succeeded", "manual", 1, None)
        assert run.worker == worker_name() and run.lease_expires_at is None
        assert run.ended_at is not None and run.ended_at >= run.started_at
        assert run.job_kind == run.job_id.partition(":")[0]
    ingest, transform = found["ingest:shop.orders"], found["transform:shop.totals"]
    assert (ingest.rows_in, ingest.rows_out) == (50, 50)
    assert ingest.versions_written == (VersionRef("shop.orders", 1),) and not ingest.versions_read
    assert (transform.rows_in, transform.rows_out) == (50, 1)
    assert transform.versions_read == (VersionRef("shop.orders", 1),)
    assert transform.versions_written == (VersionRef("shop.totals", 1),)
    delivery = found["deliver:shop.mirror:orders"]
    assert (delivery.rows_in, delivery.rows_out) == (50, 50)
    assert delivery.versions_read == (VersionRef("shop.orders", 1),)
    assert not delivery.versions_written


def test_a_second_run_with_nothing_new_records_unchanged(tmp_path: Path,
                                                         ferry: Callable[..., Any]) -> None:
    root = make_shop(tmp_path / "model")
    assert ferry("run", "--model", root).code == 0
    assert ferry("run", "--model", root).code == 0
    with history(root) as runs:
        second = runs.list_runs(limit=len(JOBS))
        assert {r.job_id: r.status for r in second} == dict.fromkeys(JOBS, "unchanged")
        assert all(not r.versions_written and r.rows_out == 0 for r in second)
        log = runs.get_run(second[0].id)
    assert log is not None and log.log[0].message.startswith("unchanged: ")


def test_a_failure_is_recorded_and_its_dependents_skipped(tmp_path: Path,
                                                          ferry: Callable[..., Any]) -> None:
    root = make_shop(tmp_path / "model", with_table=False)
    assert ferry("run", "--model", root).code == 1
    with history(root) as runs:
        found = {r.job_id: r for r in runs.list_runs()}
        failed = found["ingest:shop.orders"]
        detail = runs.get_run(failed.id)
    assert failed.status == "failed" and failed.error and "orders" in failed.error
    assert failed.attempt == 1  # not transient: no retry
    assert {job: r.status for job, r in found.items() if job != failed.job_id} == dict.fromkeys(
        JOBS[1:], "skipped")
    assert found["transform:shop.totals"].error == "ingest:shop.orders did not succeed"
    assert detail is not None
    assert [(line.level, line.message) for line in detail.log] == [
        ("error", f"attempt 1 failed: {failed.error}")]


def test_a_retried_job_records_each_attempt(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient failure and then success: two runs of one job, attempts 1 and 2."""
    root = make_shop(tmp_path / "model")
    loaded = load_model(root)
    context = RunContext.from_loaded(loaded)
    jobs = select(build_graph(context.index), context.index, ["shop.orders"], downstream=False)
    real = runner.run_job
    calls: list[str] = []

    def flaky(context: RunContext, job: Job, on_rows: Any, full: bool,
             run_id: int | None = None) -> JobResult:
        calls.append(job.id)
        if len(calls) == 1:
            raise TransientError("source shop.db: connection refused")
        return real(context, job, on_rows, full, run_id)

    monkeypatch.setattr(runner, "run_job", flaky)
    delays: list[float] = []
    try:
        [result] = run_jobs(context, jobs, sleep=delays.append)
    finally:
        context.close()
    assert result.status == "succeeded" and result.attempts == 2 and len(delays) == 1
    with history(root) as runs:
        first, second = sorted(runs.list_runs(), key=lambda r: r.id)
        retried = runs.get_run(first.id)
    assert (first.attempt, first.status) == (1, "failed")
    assert (second.attempt, second.status, second.id) == (2, "succeeded", result.run_id)
    assert retried is not None
    assert [line.level for line in retried.log] == ["error", "info"]
    assert "retrying in" in retried.log[1].message


def test_a_transient_error_on_the_last_attempt_says_it_gave_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error cannot know it was the last try: the runner says so, instead of a
    connector's 'will retry' after the last attempt."""
    root = make_shop(tmp_path / "model")
    context = RunContext.from_loaded(load_model(root))
    jobs = select(build_graph(context.index), context.index, ["shop.orders"], downstream=False)

    def down(context: RunContext, job: Job, on_rows: Any, full: bool,
             run_id: int | None = None) -> JobResult:
        raise TransientError("source shop.db: the database is locked",
                             public="source shop.db: the database is locked")

    monkeypatch.setattr(runner, "run_job", down)
    try:
        [result] = run_jobs(context, jobs, sleep=lambda _: None, attempts=3)
        [single] = run_jobs(context, jobs, sleep=lambda _: None, attempts=1)
    finally:
        context.close()
    assert result.message.endswith("(a transient error; gave up after 3 attempts)")
    assert single.message.endswith("(a transient error; run it again to retry)")
    with history(root) as runs:
        last = runs.get_run(result.run_id or 0)
    assert last is not None and last.error is not None
    assert last.error.endswith("gave up after 3 attempts)") and "will retry" not in last.error


def test_a_long_job_keeps_its_run_alive(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease is extended while the job works, so no scheduler takes it for dead."""
    root = make_shop(tmp_path / "model")
    context = RunContext.from_loaded(load_model(root))
    jobs = select(build_graph(context.index), context.index, ["shop.orders"], downstream=False)
    real = runner.run_job
    seen: list[bool] = []

    def slow(context: RunContext, job: Job, on_rows: Any, full: bool,
             run_id: int | None = None) -> JobResult:
        running = [r for r in context.runs.list_runs() if r.status == "running"]
        before = running[0].lease_expires_at
        time.sleep(0.3)
        after = context.runs.get_run(running[0].id)
        assert after is not None and before is not None and after.lease_expires_at is not None
        seen.append(after.lease_expires_at > before)
        return real(context, job, on_rows, full, run_id)

    monkeypatch.setattr(runner, "run_job", slow)
    monkeypatch.setattr(runner, "HEARTBEAT_SECONDS", 0.05)
    try:
        [result] = run_jobs(context, jobs)
    finally:
        context.close()
    assert result.status == "succeeded" and seen == [True]


def test_commands_that_run_no_job_do_not_create_the_database(
        tmp_path: Path, ferry: Callable[..., Any]) -> None:
    root = make_shop(tmp_path / "model")
    assert ferry("check", "--model", root).code == 0
    assert ferry("runs", "--model", root).code == 0
    assert not (root / ".ferry" / "ferry.db").exists()


POSTGRES_TEAM = """\
team: crm
zone: eu
owners: [alice@acme.example]
sources:
  crmdb:
    kind: postgres
    dsn: postgresql://ferry@127.0.0.1:1/crm
    password: ${env:FERRY_TEST_CRM_PASSWORD}
    datasets:
      accounts:
        table: public.accounts
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
consumers:
  copy:
    sink: {kind: duckdb, path: out/copy.duckdb}
    datasets:
      - {ref: crm.accounts}
"""
PASSWORD = "Tr0ub4dor-and-3-horses"


def test_no_secret_is_recorded_after_a_failing_run(tmp_path: Path, ferry: Callable[..., Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A source whose server is down (port 1) fails all three attempts: every attempt and
    log line is recorded, and the password is in none of them, nor anywhere in the file."""
    monkeypatch.setenv("FERRY_TEST_CRM_PASSWORD", PASSWORD)
    monkeypatch.setattr(runner, "BACKOFF", 0.0)
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/crm/crm.yaml": POSTGRES_TEAM})
    out = ferry("run", "--model", root)
    assert out.code == 1, out
    with history(root) as runs:
        recorded = runs.list_runs()
        details = [runs.get_run(r.id) for r in recorded]
    assert sorted((r.job_id, r.attempt, r.status) for r in recorded) == [
        ("deliver:crm.copy:accounts", 1, "skipped"),
        ("ingest:crm.accounts", 1, "failed"),
        ("ingest:crm.accounts", 2, "failed"),
        ("ingest:crm.accounts", 3, "failed"),
    ]
    last = next(d for d in details if d is not None and d.attempt == 3)
    assert [line.message for line in last.log][-1] == "gave up after 3 attempts"
    texts = [str(detail) for detail in details]
    texts += [line.message for detail in details if detail is not None for line in detail.log]
    assert any("127.0.0.1:1" in text for text in texts)  # the error is there...
    assert not [text for text in texts if PASSWORD in text]  # ...the password is not
    shown = ferry("runs", "--model", root, "--json").out + ferry(
        "runs", str(recorded[-1].id), "--model", root, "--json").out
    assert "127.0.0.1:1" in shown and PASSWORD not in shown
    for path in (root / ".ferry").glob("ferry.db*"):  # the database and its WAL
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_attempts_are_configurable(tmp_path: Path, ferry: Callable[..., Any],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_CRM_PASSWORD", PASSWORD)
    monkeypatch.setattr(runner, "BACKOFF", 0.0)
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/crm/crm.yaml": POSTGRES_TEAM})
    assert ferry("run", "crm.accounts", "--attempts", "5", "--model", root).code == 1
    with history(root) as runs:
        assert sorted(r.attempt for r in runs.list_runs()) == [1, 2, 3, 4, 5]
    assert ferry("run", "crm.accounts", "--attempts", "1", "--model", root).code == 1
    with history(root) as runs:
        assert [r.attempt for r in runs.list_runs(limit=1)] == [1]
        assert len(runs.list_runs()) == 6
