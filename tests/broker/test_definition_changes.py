"""A transformer whose definition changed is due (the scheduler's ``definition`` trigger)
and ``ferry run REF --downstream`` carries its new version to the deliveries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataferry.metadata import RunHistory, open_metadata
from tests.broker.small_model import make_shop
from tests.broker.test_scheduler import Clock, mirror, ran, scheduler

TOTALS_SQL = "select count(*) as orders, sum(amount) as total from orders"


def edit_totals(root: Path) -> None:
    model = root / "teams" / "shop" / "shop.yaml"
    model.write_text(model.read_text().replace(
        TOTALS_SQL, "select count(*) * 2 as orders, sum(amount) as total from orders"))


def test_the_scheduler_reruns_a_transformer_whose_sql_changed_and_says_why(
        tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "model")
    clock = Clock()
    first = scheduler(shop, clock)
    first.run_until_idle()
    first.close()
    before = len(ran(shop))
    edit_totals(shop)
    runner = scheduler(shop, clock)  # the model as it is now
    jobs = runner.graph.jobs
    assert runner.due(jobs["transform:shop.totals"], clock()) == "definition"
    assert runner.redefined(jobs["transform:shop.totals"]) == "SQL changed"
    assert [runner.due(jobs[j], clock()) for j in (
        "ingest:shop.orders", "deliver:shop.mirror:orders", "deliver:shop.mirror:totals")] \
        == [None, None, None]
    runner.run_until_idle()
    runner.close()
    assert ran(shop)[before:] == [("transform:shop.totals", "definition", "succeeded"),
                                  ("deliver:shop.mirror:totals", "on_change", "succeeded")]
    assert mirror(shop, "select orders from totals") == [(100,)]
    with open_metadata(f"sqlite:///{shop / '.ferry' / 'ferry.db'}") as db:
        history = RunHistory(db)
        run = next(r for r in history.list_runs() if r.job_id == "transform:shop.totals")
        detail = history.get_run(run.id)
    assert detail is not None
    assert any("SQL changed" in line.message for line in detail.log)
    again = scheduler(shop, clock)
    assert again.tick().started == []  # the new version records the new definition
    again.close()


def test_run_downstream_delivers_the_rebuilt_version(
        tmp_path: Path, ferry: Callable[..., Any]) -> None:
    shop = make_shop(tmp_path / "model")
    assert ferry("run", "--model", shop).code == 0
    edit_totals(shop)
    done = ferry("run", "shop.totals", "--downstream", "--model", shop, "--json")
    assert done.code == 0, done
    status = {r["job"]: r["status"] for r in json.loads(done.out)}
    assert status["transform:shop.totals"] == "succeeded"
    assert status["deliver:shop.mirror:totals"] == "succeeded"
    assert status.get("deliver:shop.mirror:orders", "unchanged") == "unchanged"
    assert mirror(shop, "select orders from totals") == [(100,)]
