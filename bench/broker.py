"""The broker's own costs: planning a 10,000-dataset model, and the scheduler's overhead.

Generates the same model as ``bench/model_check.py`` (10,000 source datasets, 500 SQL
transformers, 2,000 consumers with 6,000 needs over 100 teams) and prints:

  planning (job graph + platforms + plan document), the model already loaded   target < 2 s
  the definition fingerprints of every transformer (what `ferry plan` adds for its
  rebuild reasons, and what a scheduler computes once per transformer), as a share of
  planning
  loading the model (for comparison: what `ferry plan` pays before planning)
  a scheduler tick over that plan once every job has run (what `ferry up` and `ferry
  serve` pay every few seconds, between the jobs: deciding what is due for every job)
  the definition check of a tick over ``--transforms`` SQL transformers that have all
  run (their outputs in the store), against the check of their inputs it follows
  the scheduler's overhead per job: ``--jobs`` empty jobs (each does nothing and reports
  "unchanged") through `ferry up`'s path: due check, lease, the due re-check, run
  recording with its log line, release; SQLite metadata DB          target < 50 ms

    python bench/broker.py [--teams N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from model_check import generate

from dataferry.broker.plan import build_plan
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.store.store import Store


def line(label: str, value: str) -> None:
    print(f"{label:<64} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=200, help="empty jobs for the scheduler")
    parser.add_argument("--transforms", type=int, default=100,
                        help="transformers for the definition check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-broker-bench-") as tmp:
        root = Path(tmp)
        generate(root, args.teams)
        started = time.perf_counter()
        loaded = load_model(root)
        loading = time.perf_counter() - started
        assert loaded.ecosystem is not None
        started = time.perf_counter()
        index = ModelIndex(loaded.ecosystem)
        store = Store.for_model(root, loaded.ecosystem)
        plan = build_plan(index, store, None)
        planning = time.perf_counter() - started
        kinds = {k: sum(1 for j in plan["jobs"] if j["kind"] == k)
                 for k in ("ingest", "transform", "deliver")}
        line("model", f"{len(index.datasets):,} datasets, {len(index.consumers):,} consumers")
        line("jobs planned", f"{len(plan['jobs']):,} ({kinds['ingest']:,} ingest + "
             f"{kinds['transform']:,} transform + {kinds['deliver']:,} deliver)")
        line("loading the model", f"{loading:7.2f} s")
        line("planning: graph, platforms, plan document", f"{planning:7.2f} s (target < 2 s)")
        fingerprint_all(index, root, planning)
        scheduler_tick(root)
    definition_check(args.transforms)
    scheduler_overhead(args.jobs)


def fingerprint_all(index: ModelIndex, root: Path, planning: float) -> None:
    """The definition of every transformer, computed from the model (uncached)."""
    from dataferry.engine.definition import transformer_definition
    from dataferry.model.spec import Transformer

    refs = [r for r, e in index.datasets.items() if isinstance(e.spec, Transformer)]
    started = time.perf_counter()
    for ref in refs:
        transformer_definition(index, root, ref)
    seconds = time.perf_counter() - started
    line(f"definition fingerprints of {len(refs):,} transformers",
         f"{seconds:7.2f} s ({seconds / planning:.2f} x planning, "
         f"{seconds / max(len(refs), 1) * 1000:.2f} ms each)")


SMALL = """\
team: t
zone: main
owners: [a@example.com]
sources:
  files:
    kind: files
    path: data/*.csv
    datasets:
{datasets}
consumers:
  c:
    sink: {{kind: duckdb, path: out.duckdb}}
    datasets: [{refs}]
"""


def scheduler_tick(root: Path) -> float:
    """A tick of the scheduler over the big plan, after a first pass ran every due job
    (as empty jobs: the sources of the generated model do not exist); its seconds."""
    from dataferry.broker import runner
    from dataferry.broker.runner import JobResult
    from dataferry.broker.scheduler import Scheduler
    from dataferry.engine.context import RunContext
    from dataferry.metadata import utcnow

    context = RunContext.from_loaded(load_model(root))
    runner.run_job = lambda _c, job, _r, _f: JobResult(job, "unchanged", message="empty")
    # The clock stands still: on a slow pass, the jobs run first would be due again
    # (freshness, retries) before the last ran, and the tick measured would not be idle.
    frozen = utcnow()
    scheduler = Scheduler(context, workers=4, now=lambda: frozen)
    started = time.perf_counter()
    first = scheduler.tick()
    deciding = time.perf_counter() - started
    scheduler.wait()
    ran = time.perf_counter() - started
    second = scheduler.tick()  # reads the 4,000 runs just recorded
    started = time.perf_counter()
    third = scheduler.tick()
    steady = time.perf_counter() - started
    scheduler.close()
    context.close()
    assert not second.started and not third.started, second.started[:3]
    line("scheduler: first tick, deciding and queueing",
         f"{deciding:7.2f} s ({len(first.started):,} jobs due, all run in {ran:.0f} s)")
    line("scheduler: a tick once they ran (nothing due)",
         f"{steady:7.2f} s for {len(scheduler.graph.jobs):,} jobs")
    return steady


TRANSFORMS = """\
team: t
zone: main
owners: [a@example.com]
sources:
  files:
    kind: files
    path: data.csv
    datasets:
      d: {{columns: {{id: int64}}}}
transformers:
{transformers}
"""


def definition_check(count: int) -> None:
    """A tick over ``count`` transformers whose outputs exist: what asking each whether its
    definition changed costs, against asking whether its inputs did, and the whole tick."""
    from dataferry.broker.graph import build_graph
    from dataferry.broker.runner import run_jobs
    from dataferry.broker.scheduler import Scheduler
    from dataferry.engine.context import RunContext

    transformers = "".join(
        f"  x{i}:\n    inputs: [t.d]\n    sql: select id + {i} as id from d\n"
        f"    columns: {{id: int64}}\n" for i in range(count))
    with tempfile.TemporaryDirectory(prefix="ferry-definition-bench-") as tmp:
        root = Path(tmp)
        (root / "teams" / "t").mkdir(parents=True)
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "data.csv").write_text("id\n1\n2\n3\n")
        (root / "teams" / "t" / "t.yaml").write_text(TRANSFORMS.format(
            transformers=transformers))
        context = RunContext.from_loaded(load_model(root))
        graph = build_graph(context.index)
        done = run_jobs(context, graph.order(sorted(graph.jobs)))
        assert {r.status for r in done} == {"succeeded"}, {r.message for r in done}
        scheduler = Scheduler(context, workers=1)
        scheduler.tick()  # the first reads each version's lineage and definition once
        transforms = [j for j in scheduler.graph.jobs.values() if j.kind == "transform"]
        heads: dict[str, int | None] = {}
        checked, baseline = [], []
        for _ in range(15):  # alternately, each the best of its rounds: the machine is shared
            started = time.perf_counter()
            assert not any(scheduler.redefined(job, heads) for job in transforms)
            checked.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert not any(scheduler._inputs_changed(job, scheduler.latest, heads)
                           for job in transforms)
            baseline.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert not scheduler.tick().started
        tick = time.perf_counter() - started
        scheduler.close()
        context.close()
        line(f"scheduler: definition check of {count:,} transformers",
             f"{min(checked) * 1000:7.2f} ms a tick ({min(checked) / min(baseline):.2f}x "
             f"their input check, {min(checked) / tick:.1%} of the whole tick's "
             f"{tick * 1000:.0f} ms)")


def scheduler_overhead(count: int) -> None:
    """Empty jobs through the scheduler: what it costs beyond the jobs' own work."""
    from dataferry.broker import runner
    from dataferry.broker.runner import JobResult
    from dataferry.broker.scheduler import Scheduler
    from dataferry.engine.context import RunContext

    datasets = "".join(f"      d{i}: {{columns: {{id: int64}}}}\n" for i in range(count))
    refs = ", ".join(f"t.d{i}" for i in range(count))
    with tempfile.TemporaryDirectory(prefix="ferry-scheduler-bench-") as tmp:
        root = Path(tmp)
        (root / "teams" / "t").mkdir(parents=True)
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "teams" / "t" / "t.yaml").write_text(SMALL.format(datasets=datasets, refs=refs))
        context = RunContext.from_loaded(load_model(root))
        runner.run_job = lambda _c, job, _r, _f: JobResult(job, "unchanged", message="empty")
        scheduler = Scheduler(context, workers=4)
        scheduler.graph.jobs = {k: j for k, j in scheduler.graph.jobs.items()
                                if j.kind == "ingest"}  # deliveries would wait for data
        started = time.perf_counter()
        scheduler.run_until_idle()
        seconds = time.perf_counter() - started
        scheduler.close()
        runs = context.runs.list_runs(limit=count + 10)
        assert len(runs) == count and {r.status for r in runs} == {"unchanged"}
        line("scheduler: empty jobs run", f"{count:,} in {seconds:.2f} s, 4 workers")
        line("scheduler overhead per job", f"{seconds / count * 1000:7.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
