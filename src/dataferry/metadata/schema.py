"""The tables of the metadata database, as SQLAlchemy 2 typed declarative models.

Only portable types are used (``JSON``, ``DateTime(timezone=True)``, strings with the
allowed values checked in Python) so one set of models and one chain of migrations works
on SQLite and PostgreSQL alike. Every change here needs an Alembic migration in
``migrations/versions``; a test compares these models with the migrated database.

These classes are the storage layer: code outside ``dataferry.metadata`` uses the
dataclasses that ``runs``, ``leases`` and ``plans`` return instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint and index names, so migrations can refer to them by name
# and SQLite batch migrations (which recreate tables) keep them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime.

    PostgreSQL keeps the offset (``timestamptz``) but SQLite drops it, and a naive
    datetime read back from SQLite would silently compare wrongly with an aware one. So
    values are converted to UTC on the way in (on SQLite stored without offset: the
    strings then sort in time order, which lease expiry comparisons in SQL rely on) and
    tagged UTC on the way out. Naive datetimes are refused: their zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of the metadata tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunRow(Base):
    """One attempt at one job: what ran, why, where, how it ended and what it read/wrote."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # "ingest:shop.orders", "transform:shop.revenue", "deliver:team.consumer:table"
    job_id: Mapped[str] = mapped_column(String(400), index=True)
    job_kind: Mapped[str] = mapped_column(String(16))  # ingest | transform | deliver
    trigger: Mapped[str] = mapped_column(String(16))  # manual | schedule | freshness | ...
    status: Mapped[str] = mapped_column(String(16))  # queued | running | succeeded | ...
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_out: Mapped[int] = mapped_column(Integer, default=0)
    # JSON lists of {"ref": "shop.orders", "version": 7}
    versions_read: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    versions_written: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str] = mapped_column(String(300))  # host:pid of the process running it
    # Extended by heartbeats while running; a running run past it was killed (SIGKILL, OOM).
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunLogRow(Base):
    """One log line of a run, shown with the run in ``ferry runs`` and the web UI."""

    __tablename__ = "run_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class LeaseRow(Base):
    """Who may run a job right now: held until ``expires_at`` unless renewed."""

    __tablename__ = "leases"

    job_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    holder: Mapped[str] = mapped_column(String(300))
    run_id: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PlanRow(Base):
    """A plan as applied; the newest row is the plan the broker runs."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_by: Mapped[str | None] = mapped_column(String(300))
    model_hash: Mapped[str] = mapped_column(String(128))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)


class StaleRow(Base):
    """A delivery whose data is older than its consumer's ``freshness`` (scheduler)."""

    __tablename__ = "stale"

    job_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    data_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)


# The expired-run sweep filters on status and lease expiry, list_runs --failed on status.
Index("ix_runs_status_lease_expires_at", RunRow.status, RunRow.lease_expires_at)
