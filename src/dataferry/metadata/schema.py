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

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
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
    # The public summary of a failure: no row values or keys (its detail: RunErrorRow).
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
    # What everyone who may see the run reads: never a row value or key.
    message: Mapped[str] = mapped_column(Text)
    # The same line in full when it may hold row values (an error's message): only for
    # those who may read the job's rows (server.authz.can_see_run_detail).
    detail: Mapped[str | None] = mapped_column(Text)


class RunErrorRow(Base):
    """The detail of a failed run, kept apart from ``runs.error`` (its public summary):
    the full error text, which may hold row values, and the failed checks' examples."""

    __tablename__ = "run_errors"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    detail: Mapped[str | None] = mapped_column(Text)
    # [{"dataset", "check", "column", "failing_rows", "summary", "examples": [{...}]}]
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


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


class EventRow(Base):
    """A CloudEvent in the outbox: written in the transaction of the change it announces,
    read by the event stream and the dispatcher in ``seq`` order."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(450))  # the CloudEvent id: run-7, ...
    type: Mapped[str] = mapped_column(String(100))  # io.dataferry.run.failed, ...
    source: Mapped[str] = mapped_column(String(450))  # /runs/7, /datasets/shop.orders
    subject: Mapped[str | None] = mapped_column(String(450))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class NotifyProgressRow(Base):
    """How far one notify target (a consumer's webhook or NATS subject) has got through
    the outbox, and its retry state while it fails."""

    __tablename__ = "notify_progress"

    target: Mapped[str] = mapped_column(String(450), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # every event up to here is handled
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row, since the last success
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The expired-run sweep filters on status and lease expiry, list_runs --failed on status.
Index("ix_runs_status_lease_expires_at", RunRow.status, RunRow.lease_expires_at)


# --- users, tokens, audit (``ferry serve``) ------------------------------------------


class UserRow(Base):
    """A person (or robot) who logs in to the API and web UI. No default account exists."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))  # admin | member | viewer
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string format
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The TOTP seed, AES-GCM encrypted under <home>/keys/totp.key (never stored plain).
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    # Set once the user proved the seed works; from then on login needs a code.
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last accepted time step: a code of that step or an earlier one is a replay.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserTeamRow(Base):
    """A team a user is a member of, beyond those whose model owners name their e-mail."""

    __tablename__ = "user_teams"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    team: Mapped[str] = mapped_column(String(200), primary_key=True)


class RecoveryCodeRow(Base):
    """A one-time TOTP recovery code, stored only as its SHA-256."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TokenRow(Base):
    """An access token (from a login) or an API token (CI, automation): only its hash."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # access | api
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    scopes: Mapped[list[str] | None] = mapped_column(JSON)  # None: all the user's rights
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One audited event; rows are only ever inserted (``ferry audit`` reads them)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str | None] = mapped_column(String(400))
    outcome: Mapped[str] = mapped_column(String(32))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class LoginFailureRow(Base):
    """A failed login or TOTP attempt: rate limits count these, so all processes agree."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(200))
    client_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when the account logs in successfully: no longer counts against the account,
    # still counts against the IP.
    account_cleared: Mapped[bool] = mapped_column(Boolean, default=False)


Index("ix_login_failures_account_at", LoginFailureRow.account, LoginFailureRow.at)
Index("ix_login_failures_client_ip_at", LoginFailureRow.client_ip, LoginFailureRow.at)


class ShareTokenRow(Base):
    """A Delta Sharing bearer token of one consumer (``ferry share create``): only its hash."""

    __tablename__ = "share_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(200), index=True)  # <team>.<consumer>
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AgentEnrollmentRow(Base):
    """A one-time enrollment token of a private network (``ferry agents enroll``): its hash."""

    __tablename__ = "agent_enrollments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    spent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    agent_id: Mapped[int | None] = mapped_column(Integer)


class AgentRow(Base):
    """An enrolled gateway agent: its Ed25519 public key and its credential's hash."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(100), index=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)  # raw Ed25519, hex
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    hostname: Mapped[str] = mapped_column(String(300))
    version: Mapped[str] = mapped_column(String(100))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AgentJobRow(Base):
    """A job handed to the agents of a network: queued, leased by one agent, ended."""

    __tablename__ = "agent_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(400))
    network: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))  # ingest | deliver | check
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20))  # queued|running|done|failed|cancelled
    run_id: Mapped[int | None] = mapped_column(Integer)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_agent_jobs_network_state", "network", "state"),)
