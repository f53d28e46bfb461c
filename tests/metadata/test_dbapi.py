"""The run history through the database driver (``metadata/dbapi.py``) stores rows exactly
as SQLAlchemy's models read them (the server, migrations and ``ferry runs`` share them),
and its URL parsing agrees with SQLAlchemy's without ever showing a password."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from dataferry.metadata import Metadata, PublishedVersion, RunHistory, Staleness
from dataferry.metadata.dbapi import DatabaseUrl
from dataferry.metadata.runs import VersionRef
from dataferry.metadata.schema import EventRow, RunErrorRow, RunLogRow, RunRow, StaleRow

MOMENT = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_rows_written_without_sqlalchemy_read_back_the_same_through_it(db: Metadata) -> None:
    runs = RunHistory(db, now=lambda: MOMENT)
    run_id = runs.start_run("ingest:crm.tiny", "ingest", "manual", 2, "host:1", 60)
    runs.log(run_id, "warning", "public", detail="with row values")
    published = PublishedVersion("crm.tiny", 3, 10, "abc", MOMENT, added=10)
    assert runs.finish_run(run_id, "failed", rows_in=10, rows_out=4,
                           versions_read=[VersionRef("crm.a", 1)],
                           versions_written=[VersionRef("crm.tiny", 3)], error="it failed",
                           error_detail="it failed on (5, x)",
                           checks=[{"check": "unique", "examples": [{"id": 5}]}],
                           published=[published])
    Staleness(db, now=lambda: MOMENT).mark("deliver:a.b:t", MOMENT - timedelta(hours=1),
                                           "old", dataset="crm.tiny")
    with db.reads.begin() as session:
        run = session.get(RunRow, run_id)
        assert run is not None
        assert (run.job_id, run.job_kind, run.trigger, run.status, run.attempt) == (
            "ingest:crm.tiny", "ingest", "manual", "failed", 2)
        assert run.started_at == MOMENT and run.ended_at == MOMENT
        assert run.lease_expires_at is None and run.worker == "host:1"
        assert run.versions_read == [{"ref": "crm.a", "version": 1}]
        assert run.versions_written == [{"ref": "crm.tiny", "version": 3}]
        assert (run.rows_in, run.rows_out, run.error) == (10, 4, "it failed")
        line = session.query(RunLogRow).filter_by(run_id=run_id).one()
        assert (line.at, line.level, line.message, line.detail) == (
            MOMENT, "warning", "public", "with row values")
        error = session.get(RunErrorRow, run_id)
        assert error is not None and error.detail == "it failed on (5, x)"
        assert error.checks == [{"check": "unique", "examples": [{"id": 5}]}]
        events = session.query(EventRow).order_by(EventRow.seq).all()
        assert [e.type for e in events] == ["io.dataferry.run.failed",
                                            "io.dataferry.dataset.version.published",
                                            "io.dataferry.dataset.stale"]
        assert events[0].time == MOMENT and events[0].data["written"] == [
            {"ref": "crm.tiny", "version": 3}]
        stale = session.get(StaleRow, "deliver:a.b:t")
        assert stale is not None and stale.data_as_of == MOMENT - timedelta(hours=1)
    # and what SQLAlchemy writes, the driver reads
    with db.sessions.begin() as session:
        session.add(RunRow(job_id="deliver:a.b:t", job_kind="deliver", trigger="schedule",
                           status="succeeded", attempt=1, started_at=MOMENT, ended_at=MOMENT,
                           rows_in=1, rows_out=1, versions_read=[{"ref": "crm.tiny",
                                                                  "version": 3}],
                           versions_written=[], error=None, worker="w:2",
                           lease_expires_at=None))
    last = runs.last_run("deliver:a.b:t")
    assert last is not None and last.started_at == MOMENT
    assert last.versions_read == (VersionRef("crm.tiny", 3),)
    assert [h.version for h in runs.held_versions("crm.tiny")] == [3]


_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=20)
_secret = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=6,
                  max_size=30)


@given(user=_name, password=_secret, host=_name, port=st.integers(1, 65535), database=_name)
def test_a_postgres_url_is_read_as_sqlalchemy_reads_it_and_never_shows_its_password(
        user: str, password: str, host: str, port: int, database: str) -> None:
    quoted = quote(password, safe="")
    url = f"postgresql://{user}:{quoted}@{host}:{port}/{database}"
    parsed = DatabaseUrl.parse(url)
    assert parsed.backend == make_url(url).get_backend_name() == "postgresql"
    assert parsed.masked() == f"postgresql://{user}:***@{host}:{port}/{database}"
    assert parsed.psycopg_conninfo() == url


@given(path=st.lists(_name, min_size=1, max_size=4), absolute=st.booleans())
def test_a_sqlite_url_names_the_file_sqlalchemy_would_open(path: list[str],
                                                           absolute: bool) -> None:
    url = "sqlite:///" + ("/" if absolute else "") + "/".join(path)
    assert DatabaseUrl.parse(url).database == make_url(url).database
    assert DatabaseUrl.parse("sqlite://").database is make_url("sqlite://").database is None
