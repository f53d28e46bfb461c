"""The audit log: an append-only record of logins, token and user changes, runs
triggered, shares issued and data read (``ferry audit``, SERVER.md).

There is deliberately no update or delete here. ``detail`` is for facts that help an
investigation (which token, which role, why a login failed) and must never hold a
secret: callers pass only names, ids and reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import AuditRow

Outcome = Literal["success", "failure", "denied", "rate_limited"]


@dataclass(frozen=True)
class AuditEntry:
    """One audited event; ``at`` is aware UTC."""

    id: int
    at: datetime
    actor: str
    action: str
    object: str | None
    outcome: str
    client_ip: str | None
    detail: dict[str, Any] | None


class AuditLog:
    """Appends to and reads the ``audit`` table."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def record(self, actor: str, action: str, object: str | None, outcome: Outcome, *,
               client_ip: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Append one event, stamped now.

        ``actor`` is who acted (a username, ``cli:<os user>``, or the name someone tried
        to log in as); ``object`` what it was done to (``user:ana``, ``token:12``).
        """
        with self.db.sessions.begin() as session:
            session.add(AuditRow(at=self.now(), actor=actor[:300], action=action,
                                 object=None if object is None else object[:400],
                                 outcome=outcome, client_ip=client_ip, detail=detail))

    def entries(self, since: datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Events oldest first, from ``since`` on (the newest ``limit`` of them)."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        with self.db.reads.begin() as session:
            rows = session.scalars(query).all()
            return [AuditEntry(r.id, r.at, r.actor, r.action, r.object, r.outcome, r.client_ip,
                               r.detail) for r in reversed(rows)]
