"""A scheduler tick reading every dataset's head from one walk of the store
(``Store.heads``) against asking the store about each input alone (the code before).

1. Ticks over bench/model_check.py's generated ecosystem once every job has run (as
   bench/broker.py's ``scheduler_tick``: empty jobs, nothing due), interleaved in one
   process: ``Store.heads`` as it is, then answering None as a store in a bucket does,
   which makes ``Scheduler._head`` ask each input alone. Median CPU seconds of each.
2. ``Store.heads()`` against ``head_number()`` of each dataset on a local store where
   half the datasets have versions (signature files only: only names are read).

    python bench/tick_heads.py [--size 10000] [--rounds 7] [--model DIR]

``--model`` reuses a generated model directory (the first pass runs every job once and
records it in the model's metadata DB; at 100,000 that takes 15-25 minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_check import generate


def ticks(root: Path, rounds: int) -> None:
    from dataferry.broker import runner
    from dataferry.broker.runner import JobResult
    from dataferry.broker.scheduler import Scheduler
    from dataferry.engine.context import RunContext
    from dataferry.metadata import utcnow
    from dataferry.model.load import load_model
    from dataferry.store.store import Store

    context = RunContext.from_loaded(load_model(root))
    runner.run_job = lambda _c, job, _r, _f: JobResult(job, "unchanged", message="empty")
    frozen = utcnow()  # the clock stands still: nothing falls due again meanwhile
    scheduler = Scheduler(context, workers=4, now=lambda: frozen)
    started = time.perf_counter()
    scheduler.tick()
    scheduler.wait()
    scheduler.tick()
    print(f"first pass: {time.perf_counter() - started:.0f} s, "
          f"{len(scheduler.graph.jobs):,} jobs", flush=True)
    listed = Store.heads
    ways = {"one listing a tick": listed, "each input alone": lambda _store: None}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, heads in ways.items():
            Store.heads = heads  # type: ignore[method-assign]
            before = time.process_time()
            report = scheduler.tick()
            cpu[name].append(time.process_time() - before)
            assert not report.started, report.started[:3]
    Store.heads = listed  # type: ignore[method-assign]
    scheduler.close()
    context.close()
    for name, seconds in cpu.items():
        print(f"tick, {name}: {statistics.median(seconds):.3f} s CPU (median of {rounds})")
    ratio = statistics.median(cpu["each input alone"]) / statistics.median(
        cpu["one listing a tick"])
    print(f"ratio {ratio:.2f}x, load average {os.getloadavg()[0]:.1f}", flush=True)


def listing(size: int, versions: int = 3) -> None:
    from dataferry.store.store import Store

    with tempfile.TemporaryDirectory(prefix="ferry-heads-") as tmp:
        root = Path(tmp) / "store"
        refs = []
        for i in range(size):
            team, name = f"t{i // 100}", f"d{i % 100}"
            signed = root / team / name / "_sig" / "m"
            signed.mkdir(parents=True)
            for version in range(1, versions + 1):
                (signed / f"{version:012d}.sig").touch()
                (signed / f"{version:012d}.json").touch()
            refs.append(f"{team}.{name}")
        refs += [f"x{i // 100}.d{i % 100}" for i in range(size)]  # no version yet
        store = Store(root, Path(tmp))
        cpu: dict[str, list[float]] = {"Store.heads()": [], "head_number() of each": []}
        for _ in range(5):
            before = time.process_time()
            heads = store.heads()
            cpu["Store.heads()"].append(time.process_time() - before)
            before = time.process_time()
            each = {ref: store.dataset(ref).head_number() for ref in refs}
            cpu["head_number() of each"].append(time.process_time() - before)
            assert heads == {ref: head for ref, head in each.items() if head is not None}
        for name, seconds in cpu.items():
            print(f"{name}: {statistics.median(seconds) * 1000:.0f} ms CPU, {size:,} datasets "
                  f"with {versions} versions and {size:,} without")
        print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model", type=Path, help="a generated model to reuse")
    args = parser.parse_args()
    listing(args.size)
    if args.model is not None:
        ticks(args.model, args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="ferry-tick-heads-") as tmp:
        root = Path(tmp) / "model"
        root.mkdir()
        generate(root, args.size // 100, datasets=args.size, transformers=args.size // 20,
                 consumers=args.size // 5)
        ticks(root, args.rounds)


if __name__ == "__main__":
    main()
