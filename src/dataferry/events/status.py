"""Where each notify target stands: for admins (``GET /api/v1/notify``, the admin page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dataferry.engine.context import RunContext
from dataferry.events.routing import notify_targets
from dataferry.metadata import NotifyProgress, Outbox


@dataclass(frozen=True)
class TargetState:
    consumer: str
    kind: str  # webhook | nats
    address: str  # the webhook URL, or "<server> <subject>" for NATS
    status: str  # delivering | failing | waiting (no scheduler has served it yet)
    sent: int
    behind: int  # events after its place in the outbox (not all of them are for it)
    failures: int
    last_error: str | None
    retry_at: datetime | None


def target_states(context: RunContext) -> list[TargetState]:
    progress = {p.target: p for p in NotifyProgress(context.metadata).all()}
    newest = Outbox(context.metadata).last_seq()
    out = []
    for target in notify_targets(context.index):
        kind = target.kind
        found = progress.get(target.key)
        if found is None:
            out.append(TargetState(target.consumer, kind, target.address, "waiting", 0, 0, 0,
                                   None, None))
            continue
        out.append(TargetState(
            target.consumer, kind, target.address,
            "failing" if found.last_error else "delivering", found.sent,
            max(newest - found.position, 0), found.failures, found.last_error,
            found.retry_at))
    return out
