"""The fixed cost of `ferry run` (issue 13: process start to first source read <= 0.5 s).

Runs `ferry run` of a one-row SQLite dataset ``--runs`` times in fresh processes, with
bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed) after a warm-up run, and prints
the medians of:

  - the whole process: wall time and CPU (user + system);
  - process start to the first source read: wall and CPU (``FERRY_TRACE_STARTUP=1``
    makes the run print both when it first touches the source, see
    ``dataferry.startup_trace``);

against a baseline measured the same way, interleaved in the same pass:
``python -c "import pyarrow"``, the floor any Arrow tool pays. ``--before SRC`` also
times, interleaved in the same pass, ``ferry`` importing dataferry from another
checkout's ``src`` (e.g. ``git worktree add /tmp/main main``, then ``/tmp/main/src``).

    python bench/startup.py [--runs N] [--keep DIR] [--model DIR --ref REF] [--before SRC]

``--model DIR --ref REF`` times ``ferry run REF`` of that model instead (e.g. the demo's,
``ferry demo DIR`` then ``--model DIR --ref shop.customers``).
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TRACE = re.compile(r"ferry-startup: first-read monotonic=([\d.]+) cpu=([\d.]+)")

FERRY_YAML = """\
ecosystem: bench
zones:
  eu: {export_classifications: [public, internal]}
platforms:
  local: {engine: duckdb}
"""
TEAM = """\
team: crm
zone: eu
owners: [crm@acme.example]
sources:
  lite:
    kind: sqlite
    path: tiny.db
    datasets:
      tiny:
        table: tiny
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
"""


def build(root: Path) -> None:
    (root / "teams" / "crm").mkdir(parents=True, exist_ok=True)
    (root / "ferry.yaml").write_text(FERRY_YAML)
    (root / "teams" / "crm" / "crm.yaml").write_text(TEAM)
    with sqlite3.connect(root / "tiny.db") as lite:
        lite.execute("CREATE TABLE IF NOT EXISTS tiny (id INTEGER PRIMARY KEY)")
        lite.execute("INSERT OR REPLACE INTO tiny VALUES (1)")


Timing = tuple[float, float, float | None, float | None]


def timed(command: list[str], cwd: Path, src: str | None = None) -> Timing:
    """Wall and CPU seconds of the whole child process, and (when it printed the trace)
    wall and CPU seconds from its start to its first source read; ``src``: the
    dataferry sources it imports (default: this interpreter's)."""
    env = {**ENV, "FERRY_TRACE_STARTUP": "1"}
    if src is not None:
        env["PYTHONPATH"] = src
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=cwd, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    error = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{error}")
    trace = TRACE.search(error)
    first_wall = float(trace.group(1)) - started if trace else None
    first_cpu = float(trace.group(2)) if trace else None
    return seconds, usage.ru_utime + usage.ru_stime, first_wall, first_cpu


def median(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    if not known:
        raise SystemExit("the run printed no FERRY_TRACE_STARTUP line: did it read a source?")
    return statistics.median(known)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the model here and keep it")
    parser.add_argument("--model", type=Path, help="run REF of this model instead")
    parser.add_argument("--ref", default="crm.tiny")
    parser.add_argument("--before", help="a dataferry src directory to compare with")
    args = parser.parse_args()
    if args.model:
        root = args.model
    else:
        root = args.keep or Path(tempfile.mkdtemp(prefix="ferry-startup-"))
        build(root)
    ferry = [sys.executable, "-m", "dataferry.cli", "run", args.ref, "--full"]
    floor = [sys.executable, "-c", "import pyarrow"]
    sources = {"after": str(Path(__file__).resolve().parent.parent / "src")}
    if args.before:
        sources = {"before": str(Path(args.before).resolve()), **sources}
    for src in sources.values():
        timed(ferry, root, src)  # warm-up: creates the metadata database, writes bytecode
    timed(floor, root)
    runs: dict[str, list[Timing]] = {name: [] for name in sources}
    floors: list[Timing] = []
    for _ in range(args.runs):
        for name, src in sources.items():
            runs[name].append(timed(ferry, root, src))
        floors.append(timed(floor, root))
    floor_wall, floor_cpu = median([f[0] for f in floors]), median([f[1] for f in floors])
    print(f"ferry run {args.ref} --full ({root}), medians of {args.runs} runs:")
    firsts = {}
    for name, timings in runs.items():
        wall, cpu = median([r[0] for r in timings]), median([r[1] for r in timings])
        first_wall, first_cpu = median([r[2] for r in timings]), median([r[3] for r in timings])
        firsts[name] = (first_wall, first_cpu)
        print(f"{name} ({sources[name]}):")
        print(f"  whole process          {wall:6.3f} s wall  {cpu:6.3f} s CPU")
        print(f"  start to first read    {first_wall:6.3f} s wall  {first_cpu:6.3f} s CPU"
              "   target <= 0.5 s")
        print(f"  start to first read / baseline: {first_wall / floor_wall:5.2f}x wall  "
              f"{first_cpu / floor_cpu:5.2f}x CPU")
        print(f"  whole process / baseline:       {wall / floor_wall:5.2f}x wall  "
              f"{cpu / floor_cpu:5.2f}x CPU")
    print(f"baseline `python -c 'import pyarrow'`: {floor_wall:6.3f} s wall  "
          f"{floor_cpu:6.3f} s CPU")
    if "before" in firsts:
        (before_wall, before_cpu), (after_wall, after_cpu) = firsts["before"], firsts["after"]
        print(f"start to first read, after / before: {after_wall / before_wall:5.2f}x wall  "
              f"{after_cpu / before_cpu:5.2f}x CPU")


if __name__ == "__main__":
    main()
