"""dataferry at the size of a large company: how check, plan, a scheduler tick, the
catalog API and the server's memory grow with the ecosystem (issue: 100,000 datasets and
20,000 consumers: `ferry check` < 20 s, `ferry plan` < 10 s, a tick < 1 s, catalog
search p99 < 100 ms at 100 requests/s, `ferry serve` < 2 GiB).

For each size (default 1,000, 10,000 and 100,000 source datasets; a fifth as many
consumers with 3 needs each, a twentieth as many SQL transformers; 100 datasets a team)
it generates bench/model_check.py's ecosystem and measures:

  ferry check     the whole command in its own process (start-up included); it keeps
                  the checked model in the cache (dataferry.model.cache; here a
                  temporary FERRY_CACHE_DIR)
  ferry plan      the whole command in its own process (`--json`, the plan document),
                  right after `ferry check`: from the cache
  plan changed    `ferry plan` again after a change to one team file: the first command
                  after a change loads and checks the model and keeps it in the cache
  tick            a scheduler tick over every job once each has run (empty jobs, as in
                  bench/broker.py: the generated sources do not exist), nothing due
  search p99      GET /api/v1/datasets?search=... at 100/s from a second process against
                  `ferry serve --no-scheduler` (bench/server_load.py's open-loop driver)
  serve RSS       the server's resident memory after that load

Baseline, in the same pass: `yaml.load(CSafeLoader)` of every model file (what any tool
reading the model pays), printed as the ratio of `ferry check`'s CPU seconds to its own.
Wall seconds are printed with the CPU seconds of each command (user + system, from the
children's rusage): on a shared 2-core machine the wall seconds mostly say how long the
command waited for a core, so compare the CPU seconds, and the load average printed.

    python bench/scale.py [--sizes 1000,10000,100000] [--seconds 20] [--no-tick]
                          [--phases check,plan,tick,search] [--search-only]

``--phases`` measures only some (``plan`` needs ``check``'s cache: without ``check`` its
first `ferry plan` fills the cache, untimed). `ferry serve` runs with the cache off, as
after a reload (SIGHUP loads and checks the model itself).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_check import generate
from server_load import drive_in_a_process, free_port, percentile, prepare, start_server

from broker import scheduler_tick  # bench/ is not a package

PER_TEAM = 100
PHASES = ("check", "plan", "tick", "search")
TARGETS = {"check": 20.0, "plan": 10.0, "tick": 1.0, "p99": 100.0, "rss": 2048.0}
WORDS = ["d1", "d42", "t7", "t42.d13", "c3", "c9 d5", "t99.", "nothing-matches", "id",
         "t5.d99", "d7 c1", "t13.d", "c8"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(*args: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one ``ferry`` command. On a shared
    machine the CPU seconds are the figure to compare: the wall ones include waiting for
    a core."""
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "dataferry.cli", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started, children_cpu() - cpu


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """``os.environ`` with ``variables`` set, for the commands started meanwhile."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def yaml_baseline(root: Path) -> float:
    """CPU seconds of ``yaml.load(CSafeLoader)`` of every model file, in this process."""
    started = time.process_time()
    for path in root.rglob("*.yaml"):
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    return time.process_time() - started


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return int(next(line for line in status.splitlines()
                    if line.startswith("VmRSS:")).split()[1]) / 1024


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server has used so far (start-up, model load and
    the search load)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verdict(name: str, value: float) -> str:
    return "ok" if value < TARGETS[name] else f"OVER {TARGETS[name]:g}"


def progress(size: int, what: str, wall: float, cpu: float) -> None:
    """One figure as soon as it is measured (a large size takes long; a figure measured
    is not lost if a later step fails)."""
    print(f"  {size:,}: {what} {wall:.2f} s wall, {cpu:.2f} s CPU, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)


def measure(size: int, seconds: float, phases: set[str]) -> dict[str, float]:
    teams = size // PER_TEAM
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"ferry-scale-{size}-") as tmp, \
            environment(FERRY_CACHE_DIR=str(Path(tmp) / "cache")):
        root = Path(tmp) / "model"
        root.mkdir()
        generate(root, teams, datasets=size, transformers=size // 20, consumers=size // 5)
        if "check" in phases:
            result["yaml"] = yaml_baseline(root)
            result["check"], result["check_cpu"] = timed_command("check", "--model", str(root),
                                                                 "--json")
            progress(size, "check", result["check"], result["check_cpu"])
        if "plan" in phases:
            if "check" not in phases:
                timed_command("plan", "--model", str(root), "--json")  # fills the cache
            result["plan"], result["plan_cpu"] = timed_command("plan", "--model", str(root),
                                                               "--json")
            progress(size, "plan (the checked model from the cache)", result["plan"],
                     result["plan_cpu"])
            with (root / "teams" / "t0" / "team.yaml").open("a") as team:
                team.write("# changed\n")
            result["replan"], result["replan_cpu"] = timed_command("plan", "--model",
                                                                   str(root), "--json")
            progress(size, "plan after a change (loads, checks, keeps it)", result["replan"],
                     result["replan_cpu"])
        if "tick" in phases:
            started = time.perf_counter()
            result["tick"] = scheduler_tick(root)
            result["tick_setup"] = time.perf_counter() - started
        if "search" in phases:
            search(root, teams, seconds, Path(tmp), result)
    return result


def search(root: Path, teams: int, seconds: float, tmp: Path, result: dict[str, float]) -> None:
    """Catalog search at 100/s against `ferry serve`, then the server's memory."""
    token, _ = prepare(root, teams, published=20, generated=True)
    port = free_port()
    with environment(FERRY_MODEL_CACHE="0"):  # as after a reload: see the docstring
        server = start_server(root, port, tmp / "serve.log")
    try:
        paths = [f"/api/v1/datasets?search={w}" for w in WORDS]
        result["rss_idle"] = rss_mib(server.pid)
        idle_cpu = server_cpu(server.pid)
        load = drive_in_a_process(f"http://127.0.0.1:{port}", token, paths, 100.0,
                                  seconds, 2.0)
        sent = len(load["latencies"]) + int(100.0 * 2.0)  # the warm-up's too
        result["cpu_per_request"] = (server_cpu(server.pid) - idle_cpu) / sent * 1000
        result["p99"] = percentile(load["latencies"], 0.99)
        result["p50"] = percentile(load["latencies"], 0.50)
        result["bad"] = float(sum(1 for s in load["statuses"] if s != 200))
        result["rss"] = rss_mib(server.pid)
        result["serve_cpu"] = server_cpu(server.pid)
        print(f"  {len(WORDS)} words: search p50 {result['p50']:.1f} ms, p99 "
              f"{result['p99']:.1f} ms, {result['cpu_per_request']:.2f} ms of server CPU a "
              f"request; serve {result['rss_idle']:.0f} MiB before the load, "
              f"{result['rss']:.0f} MiB after; load average {os.getloadavg()[0]:.1f}",
              flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)


def cell(r: dict[str, float], name: str) -> str:
    """A command's wall seconds and (CPU seconds), or - when not measured."""
    return (f"{r[name]:6.2f} ({r[name + '_cpu']:5.2f})" if name in r else "-").rjust(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-tick", action="store_true",
                        help="skip the tick (it first runs every job once, empty)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="what to measure, of: " + ", ".join(PHASES))
    parser.add_argument("--search-only", action="store_true",
                        help="the same as --phases search")
    args = parser.parse_args()
    if args.search_only:
        args.phases = "search"
    phases = set(args.phases.split(",")) - ({"tick"} if args.no_tick else set())
    if phases - set(PHASES):
        parser.error(f"--phases: unknown {', '.join(sorted(phases - set(PHASES)))}")
    print("wall seconds, and in () the CPU seconds (user + system) of the command: on a "
          "shared machine compare those; load = 1-minute load average before/after a size")
    print(f"{'datasets':>9} {'consumers':>9}  {'check s (cpu)':>14} {'x yaml':>6}  "
          f"{'plan s (cpu)':>14}  {'changed (cpu)':>14}  {'tick s':>6}  "
          f"{'search p50/p99 ms':>17}  {'serve MiB':>9}  {'load':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        before = os.getloadavg()[0]
        r = measure(size, args.seconds, phases)
        after = os.getloadavg()[0]

        ratio = f"{r['check_cpu'] / r['yaml']:6.1f}" if "check" in r else "     -"
        tick = f"{r['tick']:6.2f}" if "tick" in r else "     -"
        searched = f"{r['p50']:8.1f}/{r['p99']:<8.1f}  {r['rss']:9.0f}" if "p99" in r \
            else f"{'-':>17}  {'-':>9}"
        print(f"{size:>9,} {size // 5:>9,}  {cell(r, 'check')} {ratio}  {cell(r, 'plan')}  "
              f"{cell(r, 'replan')}  {tick}  {searched}  {before:4.1f}/{after:<4.1f}"
              + ("" if not r.get("bad") else f"  ({r['bad']:.0f} non-200)"), flush=True)
        if size >= 100_000:
            checks = [n for n in ("check", "plan", "p99", "rss", "tick") if n in r]
            print("  targets at 100,000: " + ", ".join(f"{n} {verdict(n, r[n])}"
                                                       for n in checks))


if __name__ == "__main__":
    main()
