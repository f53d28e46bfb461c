"""`ferry runs`: the run history as a user reads it, with the --json shapes of CLI.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.broker.small_model import JOBS, make_shop

RUN_KEYS = {"id", "job", "kind", "trigger", "status", "attempt", "started_at", "ended_at",
            "rows", "rows_in", "rows_out", "versions_read", "versions_written", "error"}


@pytest.fixture
def root(tmp_path: Path, ferry: Callable[..., Any]) -> Path:
    """A failed run (the source table is missing), then a good one once it exists."""
    root = make_shop(tmp_path / "model", with_table=False)
    assert ferry("run", "--model", root).code == 1
    make_shop(root, rows=20)
    assert ferry("run", "--model", root).code == 0
    return root


def test_runs_json_lists_every_run_newest_first(root: Path, ferry: Callable[..., Any]) -> None:
    out = ferry("runs", "--model", root, "--json")
    assert out.code == 0, out
    runs = json.loads(out.out)
    assert len(runs) == 2 * len(JOBS)
    assert [r["id"] for r in runs] == sorted((r["id"] for r in runs), reverse=True)
    assert all(set(r) >= RUN_KEYS for r in runs)
    newest = {r["job"]: r for r in runs[: len(JOBS)]}
    assert {job: r["status"] for job, r in newest.items()} == dict.fromkeys(JOBS, "succeeded")
    ingest = newest["ingest:shop.orders"]
    assert (ingest["kind"], ingest["trigger"], ingest["attempt"]) == ("ingest", "manual", 1)
    assert (ingest["rows_in"], ingest["rows_out"], ingest["error"]) == (20, 20, None)
    assert ingest["versions_written"] == [{"ref": "shop.orders", "version": 1}]
    for key in ("started_at", "ended_at"):
        assert ingest[key].endswith("Z")
        assert datetime.fromisoformat(ingest[key]).utcoffset() is not None
    totals = newest["deliver:shop.mirror:totals"]
    assert totals["versions_read"] == [{"ref": "shop.totals", "version": 1}]


def test_failed_limit_and_job_filter(root: Path, ferry: Callable[..., Any]) -> None:
    failed = json.loads(ferry("runs", "--model", root, "--json", "--failed").out)
    assert [(r["job"], r["status"]) for r in failed] == [("ingest:shop.orders", "failed")]
    assert "orders" in failed[0]["error"]
    assert len(json.loads(ferry("runs", "--model", root, "--json", "--limit", "3").out)) == 3
    one_job = json.loads(ferry("runs", "--model", root, "--json", "--job",
                               "transform:shop.totals").out)
    assert [r["status"] for r in one_job] == ["succeeded", "skipped"]
    assert one_job[1]["error"] == "ingest:shop.orders did not succeed"


def test_one_run_with_its_log(root: Path, ferry: Callable[..., Any]) -> None:
    failed = json.loads(ferry("runs", "--model", root, "--json", "--failed").out)[0]
    out = ferry("runs", str(failed["id"]), "--model", root, "--json")
    assert out.code == 0, out
    run = json.loads(out.out)
    assert {k: run[k] for k in RUN_KEYS} == {k: failed[k] for k in RUN_KEYS}
    assert [(line["level"], line["message"]) for line in run["log"]] == [
        ("error", f"attempt 1 failed: {failed['error']}")]
    assert run["log"][0]["at"].endswith("Z")
    text = ferry("runs", str(failed["id"]), "--model", root)
    assert text.code == 0 and "ingest:shop.orders" in text.out and "attempt 1 failed" in text.out


def test_text_table(root: Path, ferry: Callable[..., Any]) -> None:
    out = ferry("runs", "--model", root)
    assert out.code == 0, out
    header = out.out.splitlines()[0].split()
    assert header == ["id", "job", "status", "attempt", "started", "duration", "rows", "error"]
    assert len(out.out.splitlines()) == 1 + 2 * len(JOBS)
    assert "20 → 20" in out.out and "did not succeed" in out.out


def test_unknown_run_is_a_clear_error(root: Path, ferry: Callable[..., Any]) -> None:
    out = ferry("runs", "999", "--model", root)
    assert out.code == 1 and out.out == ""
    assert out.err.strip() == "error: there is no run 999; `ferry runs` lists the recorded runs"


def test_no_runs_yet(tmp_path: Path, ferry: Callable[..., Any]) -> None:
    root = make_shop(tmp_path / "model")
    assert json.loads(ferry("runs", "--model", root, "--json").out) == []
    assert "no runs recorded yet" in ferry("runs", "--model", root).out
    assert ferry("runs", "1", "--model", root).code == 1
    assert not (root / ".ferry" / "ferry.db").exists()
