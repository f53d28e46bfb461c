"""The metadata database: run history, job leases and the applied plan (later users,
tokens, the outbox and the audit log).

One SQL database named by ``metadata:`` in ferry.yaml — a SQLite file next to the model
by default, PostgreSQL when several schedulers, workers and the server share it. The
schema is migrated with Alembic when the database is opened. Callers get plain frozen
dataclasses back and never hold an ORM session.

    db = open_metadata(metadata_url(home, ecosystem.metadata, root=model_root))
    runs = RunHistory(db)
    run_id = runs.start_run("ingest:shop.orders", "ingest", "schedule", 1, worker_name(), 60)
"""

from __future__ import annotations

from dataferry.errors import MetadataError
from dataferry.metadata.attempts import FailureCount, LoginFailures
from dataferry.metadata.audit import AuditEntry, AuditLog
from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata, metadata_url, open_metadata
from dataferry.metadata.freshness import Stale, Staleness
from dataferry.metadata.leases import Lease, Leases
from dataferry.metadata.notify import NotifyProgress, Progress
from dataferry.metadata.outbox import Event, EventCursor, Outbox, PublishedVersion
from dataferry.metadata.plans import AppliedPlan, PlanHistory
from dataferry.metadata.runs import (
    CONSUMED,
    ErrorDetail,
    LatestRuns,
    LogLine,
    Run,
    RunDetail,
    RunHistory,
    VersionRef,
    worker_name,
)
from dataferry.metadata.tokens import Token, TokenStore
from dataferry.metadata.users import ROLES, User, UserStore

__all__ = [
    "CONSUMED",
    "AppliedPlan",
    "Clock",
    "ErrorDetail",
    "Event",
    "EventCursor",
    "LatestRuns",
    "Lease",
    "Leases",
    "LogLine",
    "Metadata",
    "MetadataError",
    "NotifyProgress",
    "Outbox",
    "PlanHistory",
    "Progress",
    "PublishedVersion",
    "Run",
    "RunDetail",
    "RunHistory",
    "Stale",
    "Staleness",
    "VersionRef",
    "metadata_url",
    "open_metadata",
    "utcnow",
    "worker_name",
]
__all__ += [
    "ROLES",
    "AuditEntry",
    "AuditLog",
    "FailureCount",
    "LoginFailures",
    "Token",
    "TokenStore",
    "User",
    "UserStore",
]
