"""Opening the metadata DB: where it lives, migrations, concurrency of the first open."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from dataferry.errors import TransientError
from dataferry.metadata import (
    ErrorDetail,
    MetadataError,
    Outbox,
    RunHistory,
    metadata_url,
    open_metadata,
)
from dataferry.metadata.database import alembic_config, head_revision
from dataferry.metadata.schema import Base
from tests.conftest import require_service
from tests.connectors.pg_helpers import temporary_database as postgres_database
from tests.metadata.racer import open_at_once

TABLES = {"runs", "run_logs", "leases", "plans", "stale", "users", "user_teams",
          "recovery_codes", "tokens", "audit", "login_failures", "events", "notify_progress",
          "run_errors", "share_tokens", "agent_enrollments", "agents", "agent_jobs",
          "alembic_version"}
HEAD = "0008"


def _revision(url: str) -> str | None:
    with open_metadata(url) as db, db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_open_creates_the_schema_and_a_second_open_changes_nothing(url: str) -> None:
    with open_metadata(url) as db:
        assert set(inspect(db.engine).get_table_names()) == TABLES
        run_id = RunHistory(db).start_run("ingest:shop.orders", "ingest", "manual", 1, "h:1", 60)
    assert _revision(url) == HEAD
    with open_metadata(url) as again:
        assert RunHistory(again).get_run(run_id) is not None
        assert set(inspect(again.engine).get_table_names()) == TABLES


def test_the_quick_head_check_agrees_with_alembic(url: str) -> None:
    """``upgrade`` skips Alembic when the database is at ``head_revision()``; that must be
    the head Alembic itself finds, and a database one revision behind still upgrades."""
    script = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == script.get_current_head()
    with open_metadata(url) as db, db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "-1")
    assert _revision(url) == HEAD
    with open_metadata(url) as db:
        assert set(inspect(db.engine).get_table_names()) == TABLES


def test_models_and_migrations_do_not_drift(url: str) -> None:
    with open_metadata(url) as db, db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_nothing_and_back(url: str) -> None:
    with open_metadata(url) as db:
        with db.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    with open_metadata(url) as db:
        assert set(inspect(db.engine).get_table_names()) == TABLES


def test_deleting_a_run_deletes_its_log(url: str) -> None:
    with open_metadata(url) as db:
        runs = RunHistory(db)
        run_id = runs.start_run("ingest:shop.orders", "ingest", "manual", 1, "h:1", 60)
        runs.log(run_id, "info", "reading")
        with db.engine.begin() as connection:
            connection.execute(text("DELETE FROM runs WHERE id = :id"), {"id": run_id})
            left = connection.execute(text("SELECT count(*) FROM run_logs")).scalar_one()
        assert left == 0


def test_sqlite_file_and_its_directory_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ferry.db"
    with open_metadata(f"sqlite:///{path}") as db, db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 10_000
    assert path.exists()


def test_default_and_relative_urls_resolve_against_the_model(tmp_path: Path) -> None:
    root = tmp_path / "model"
    home = root / ".ferry"
    assert metadata_url(home, None) == f"sqlite:///{home}/ferry.db"
    assert metadata_url(home, "sqlite:///.ferry/ferry.db") == f"sqlite:///{root}/.ferry/ferry.db"
    # a home elsewhere: relative paths still mean "next to ferry.yaml"
    assert (metadata_url(tmp_path / "var", "sqlite:///meta.db", root=root)
            == f"sqlite:///{root}/meta.db")
    assert metadata_url(home, "sqlite:////srv/ferry.db") == "sqlite:////srv/ferry.db"
    assert metadata_url(home, "sqlite://") == "sqlite://"
    pg = "postgresql://ferry:s3cret@db.internal:5432/ferry"
    assert metadata_url(home, pg) == pg


def test_unreachable_postgres_is_transient_and_never_shows_the_password() -> None:
    with pytest.raises(TransientError) as caught:
        open_metadata("postgresql://ferry:s3cret@127.0.0.1:1/ferry")
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1:1/ferry" in str(caught.value)


@pytest.mark.parametrize("bad", ["mysql://u:s3cret@h/db", "not a url s3cret"])
def test_unsupported_urls_are_refused_clearly(bad: str) -> None:
    with pytest.raises(MetadataError) as caught:
        open_metadata(bad)
    assert "sqlite:///" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def _open_twice_at_once(url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results: Any = spawn.Queue()
    children = [spawn.Process(target=open_at_once, args=(url, barrier, results)) for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == [("ok", None), ("ok", None)], outcomes
    assert _revision(url) == HEAD


def test_two_processes_opening_a_fresh_postgres_database_at_once() -> None:
    require_service("postgres")
    with postgres_database() as url:
        _open_twice_at_once(url)


def test_two_processes_opening_a_fresh_sqlite_file_at_once(tmp_path: Path) -> None:
    _open_twice_at_once(f"sqlite:///{tmp_path / 'ferry.db'}")


def test_failures_recorded_before_0006_move_to_the_detail(url: str) -> None:
    """Old run errors, log lines and run.failed events quoted rows as they were: the
    upgrade keeps those texts for the owners and shows everyone else a summary."""
    leak = "Failing row contains (5, mallory@secret.example)"
    with open_metadata(url) as db:
        runs = RunHistory(db)
        failed = runs.start_run("deliver:crm.app:people", "deliver", "manual", 1, "h:1", 60)
        runs.log(failed, "error", f"attempt 1 failed: {leak}")
        runs.finish_run(failed, "failed", error=leak)
        skipped = runs.start_run("transform:shop.totals", "transform", "manual", 1, "h:1", 60)
        runs.finish_run(skipped, "skipped", error="ingest:shop.orders did not succeed")
        with db.engine.begin() as connection:  # as 0005 left them: one text, no detail
            command.downgrade(alembic_config(connection), "0005")
            assert leak in connection.execute(text("select error from runs")).scalars().all()
    with open_metadata(url) as db:
        runs = RunHistory(db)
        old = runs.get_run(failed)
        assert old is not None and old.error is not None and leak not in old.error
        assert old.error.startswith("deliver:crm.app:people: failed; its error was recorded")
        assert [line.message for line in old.log] == [
            "error: failed; its error was recorded before dataferry kept row values out of "
            "run errors: the detail is shown to the owning team and admins"]
        assert old.log[0].detail == f"attempt 1 failed: {leak}" and old.has_detail
        assert runs.error_detail(failed) == ErrorDetail(leak, ())
        kept = runs.get_run(skipped)
        assert kept is not None and kept.error == "ingest:shop.orders did not succeed"
        events = Outbox(db).after(0)
        assert events and all(leak not in str(event.data) for event in events)
