"""The applied plan: the newest saved plan is the one the broker runs."""

from __future__ import annotations

from datetime import UTC

from dataferry.metadata import Metadata, PlanHistory
from tests.conftest import FakeClock

PLAN = {
    "jobs": [
        {"id": "ingest:shop.orders", "platform": "local", "needs": []},
        {"id": "deliver:team.consumer:orders", "platform": "hq",
         "needs": ["ingest:shop.orders"], "freshness": "1h"},
    ],
    "model": {"ecosystem": "acme", "datasets": 2, "unicode": "Zürich ✓"},
}


def test_no_plan_before_the_first_apply(db: Metadata) -> None:
    assert PlanHistory(db).applied_plan() is None


def test_the_newest_plan_is_applied_and_round_trips(db: Metadata, clock: FakeClock) -> None:
    plans = PlanHistory(db, now=clock)
    first = plans.save_plan({"jobs": []}, "a" * 64, applied_by=None)
    clock.advance(3600)
    second = plans.save_plan(PLAN, "b" * 64, applied_by="admin@acme.example")
    assert second > first

    applied = plans.applied_plan()
    assert applied is not None
    assert applied.id == second
    assert applied.plan == PLAN
    assert applied.model_hash == "b" * 64
    assert applied.applied_by == "admin@acme.example"
    assert applied.applied_at == clock() and applied.applied_at.tzinfo == UTC
