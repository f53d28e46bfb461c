"""Applied plans: what the broker was last told to run, and by whom.

``ferry apply`` (or the server) saves the whole plan document each time; the newest one
is what the scheduler runs and what ``GET /plan`` shows. Older rows stay as the history
of what changed when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import PlanRow


@dataclass(frozen=True)
class AppliedPlan:
    """A saved plan: the document as given, the model it came from, when and by whom."""

    id: int
    applied_at: datetime
    applied_by: str | None
    model_hash: str
    plan: dict[str, Any]


class PlanHistory:
    """Saves applied plans and reads back the current one; ``now`` is the clock."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def save_plan(self, plan: dict[str, Any], model_hash: str, applied_by: str | None) -> int:
        """Record ``plan`` (a JSON-serializable document) as applied now; returns its id."""
        row = PlanRow(applied_at=self.now(), applied_by=applied_by, model_hash=model_hash,
                      plan=plan)
        with self.db.sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id

    def applied_plan(self) -> AppliedPlan | None:
        """The newest saved plan, or None before the first ``ferry apply``."""
        with self.db.reads.begin() as session:
            row = session.scalars(select(PlanRow).order_by(PlanRow.id.desc()).limit(1)).first()
            if row is None:
                return None
            return AppliedPlan(row.id, row.applied_at, row.applied_by, row.model_hash, row.plan)
