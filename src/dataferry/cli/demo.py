"""``ferry demo``: the whole idea on a laptop, offline, in well under a minute.

It creates the acme example ecosystem over a generated SQLite shop, runs the consumers
that need nothing outside this machine (DuckDB, SQLite and Parquet targets), changes some
source rows, runs again (incremental version 2), verifies the store and says what to try.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

DEMO_CONSUMERS = ["shop.reporting", "research.lake", "marketing.segments"]


def _say(text: str = "") -> None:
    typer.echo(text)


def _change_sources(root: Path, seed: int = 11) -> tuple[int, int]:
    """Update 1% of the orders and add new ones, as a shop would between two runs."""
    rng = random.Random(seed)
    now = datetime.now(UTC).isoformat()
    with sqlite3.connect(root / "data" / "shop.db") as db:
        (orders,) = db.execute("select count(*) from orders").fetchone()
        (customers,) = db.execute("select count(*) from customers").fetchone()
        changed = rng.sample(range(1, orders + 1), max(1, orders // 100))
        db.executemany("update orders set amount = ?, updated_at = ? where id = ?",
                       [(f"{rng.uniform(1, 500):.2f}", now, i) for i in changed])
        added = max(1, orders // 200)
        db.executemany(
            "insert into orders values (?,?,?,?,?,?,?)",
            [(orders + i, rng.randint(1, customers), rng.randint(1, 50),
              f"{rng.uniform(1, 500):.2f}", "EUR", now, now) for i in range(1, added + 1)],
        )
    return len(changed), added


def run_demo(directory: Path | None, scale: int) -> int:
    from dataferry.broker.graph import build_graph, select
    from dataferry.broker.runner import run_jobs
    from dataferry.cli.progress import JobProgress
    from dataferry.cli.run_commands import _context, _summary
    from dataferry.engine.context import RunContext
    from dataferry.model.scaffold import create_example
    from dataferry.store.verify import VerifyReport, verify_dataset

    started = time.monotonic()
    root = directory or Path(tempfile.mkdtemp(prefix="ferry-demo-"))
    _say(f"1. creating the acme example ecosystem in {root}")
    create_example(root, force=True, scale=scale)
    context = _context(root)
    assert isinstance(context, RunContext)
    with sqlite3.connect(root / "data" / "shop.db") as db:
        counts = {t: db.execute(f"select count(*) from {t}").fetchone()[0]
                  for t in ("customers", "orders", "products", "campaigns")}
    _say("   source: data/shop.db (SQLite) with " + ", ".join(
        f"{n:,} {t}" for t, n in counts.items()))
    graph = build_graph(context.index)
    jobs = select(graph, context.index, DEMO_CONSUMERS, downstream=False)
    failed = False
    for step, label in ((2, "first run: ingest, transform, deliver"),
                        (4, "second run: only what changed")):
        if step == 4:
            changed, added = _change_sources(root)
            _say(f"3. changing the source: {changed:,} orders updated, {added:,} added")
        _say(f"{step}. {label} ({len(jobs)} jobs)")
        with JobProgress() as progress:
            results = run_jobs(context, jobs, progress=progress)
        _summary(results)
        for result in results:
            if result.status == "failed":
                failed = True
                typer.echo(f"error: {result.job.id} failed: {result.message}", err=True)
        if failed:
            return 1
    report = VerifyReport()
    for ref in context.store.refs():
        verify_dataset(context.store.dataset(ref), report)
    _say(f"5. verified the store: {report.checked_versions} versions, {report.checked_files} "
         f"files, every hash, signature and chain link " + ("ok" if report.ok else "FAILED"))
    for problem in report.problems:
        _say(f"   {problem.as_text()}")
    _say(f"\ndone in {time.monotonic() - started:.1f} s. Try next:")
    m = f"--model {root}"
    for line in (
        f"ferry log shop.orders {m}               # versions: rows added/removed, signer",
        f"ferry show shop.orders@1 --limit 5 {m}  # time travel",
        f"ferry diff shop.orders 1 2 {m}          # what the second run changed",
        f"ferry datasets {m}",
        f"ferry verify {m}",
        f"ferry runs {m}                          # every job run: status, rows, errors",
        f"ferry plan {m}                          # the job graph, where each job runs, why",
        f"ferry up {m}                            # the scheduler (Ctrl-C stops it); "
        "the jobs beyond the demo's (an outside HTTP API, a webhook secret, an agent "
        "of hq-lan) fail, each saying what it needs",
        f"duckdb {root / 'data/out/reporting.duckdb'} 'select * from orders limit 5'",
        f"sqlite3 {root / 'data/out/marketing.db'} 'select count(*) from customers'",
        f"ls {root / 'data/out/lake'}                       # the Parquet consumer",
        f"ferry share create research.notebooks --endpoint http://127.0.0.1:8400 "
        f"--out notebooks.share {m}  # a Delta Sharing profile for the share consumer",
        f"ferry serve {m}                         # serves it (docs/sharing.md)",
    ):
        _say(f"  {line}")
    return 0 if report.ok else 1
