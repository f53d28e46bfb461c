"""The metadata database: run history, job leases and the applied plan (later users,
tokens, the outbox and the audit log).

One SQL database named by ``metadata:`` in ferry.yaml — a SQLite file next to the model
by default, PostgreSQL when several schedulers, workers and the server share it. The
schema is migrated with Alembic when the database is opened. Callers get plain frozen
dataclasses back and never hold an ORM session.

    db = open_metadata(metadata_url(home, ecosystem.metadata, root=model_root))
    runs = RunHistory(db)
    run_id = runs.start_run("ingest:shop.orders", "ingest", "schedule", 1, worker_name(), 60)

Each name below loads its module on first use: a run needs the run history only, not
the users, tokens and leases, which load SQLAlchemy (``dbapi`` says why that matters).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        abandoned,
        worker_name,
    )
    from dataferry.metadata.tokens import Token, TokenStore
    from dataferry.metadata.users import ROLES, User, UserStore

_MODULES = {
    "dataferry.errors": ["MetadataError"],
    "dataferry.metadata.attempts": ["FailureCount", "LoginFailures"],
    "dataferry.metadata.audit": ["AuditEntry", "AuditLog"],
    "dataferry.metadata.clock": ["Clock", "utcnow"],
    "dataferry.metadata.database": ["Metadata", "metadata_url", "open_metadata"],
    "dataferry.metadata.freshness": ["Stale", "Staleness"],
    "dataferry.metadata.leases": ["Lease", "Leases"],
    "dataferry.metadata.notify": ["NotifyProgress", "Progress"],
    "dataferry.metadata.outbox": ["Event", "EventCursor", "Outbox", "PublishedVersion"],
    "dataferry.metadata.plans": ["AppliedPlan", "PlanHistory"],
    "dataferry.metadata.runs": ["CONSUMED", "ErrorDetail", "LatestRuns", "LogLine", "Run",
                                "RunDetail", "RunHistory", "VersionRef", "abandoned",
                                "worker_name"],
    "dataferry.metadata.tokens": ["Token", "TokenStore"],
    "dataferry.metadata.users": ["ROLES", "User", "UserStore"],
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "CONSUMED",
    "ROLES",
    "AppliedPlan",
    "AuditEntry",
    "AuditLog",
    "Clock",
    "ErrorDetail",
    "Event",
    "EventCursor",
    "FailureCount",
    "LatestRuns",
    "Lease",
    "Leases",
    "LogLine",
    "LoginFailures",
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
    "Token",
    "TokenStore",
    "User",
    "UserStore",
    "VersionRef",
    "abandoned",
    "metadata_url",
    "open_metadata",
    "utcnow",
    "worker_name",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
