"""How fast `ferry serve` answers with 10,000 datasets in the catalog (issue: p99 < 100 ms
at 100 requests/s from a second process on loopback).

Generates bench/model_check.py's ecosystem (10,000 source datasets over 100 teams, 500
transformers, 2,000 consumers), publishes a version of a handful of datasets (``--publish``,
default 20: the catalog must cope with 10,000 entries, not 10,000 versions), creates an
admin and an API token, and starts `ferry serve --no-scheduler` in its own process on
127.0.0.1. A second process then drives load at a fixed arrival rate (open loop: each
request is due at start + i/rate and its latency is counted from that moment, so a server
that falls behind cannot hide it) for each scenario in turn:

  search   GET /api/v1/datasets?search=<word>   (words vary: refs, columns, no match)
  detail   GET /api/v1/datasets/{ref}           (random refs, published and not)
  page     GET /datasets/{ref}                  (the web UI's dataset page, when it exists)

and prints p50/p90/p99/max latency and the achieved rate against the target.

    python bench/server_load.py [--rate 100] [--seconds 20] [--warmup 2] [--teams 100]
                                [--publish 20] [--keep DIR] [--wrk]

The load generator is Python (threads + httpx keep-alive clients) rather than wrk: wrk
runs closed-loop, as fast as it can, and cannot hold a fixed rate (wrk2 can, but Debian
does not ship it). With ``--wrk`` and wrk installed, a closed-loop wrk run (2 connections,
same paths via a Lua script) is added per scenario for the maximum throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_check import generate  # bench/ is not a package

TARGET_P99_MS = 100.0
WORKERS = 8
"""Threads (each with its own keep-alive connection) of the load generator: enough for
100/s at up to 80 ms a request; more only add idle connections the server times out."""
WORDS = ["d1", "d42", "t7", "t42.d13", "c3", "c9 d5", "t99.", "nothing-matches", "", "id",
         "t5.d99", "d7 c1", "t13.d", "c8"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(root: Path, teams: int, published: int, *, generated: bool = False
            ) -> tuple[str, list[str]]:
    """Generate the model (unless ``generated``: it is in ``root`` already), publish
    ``published`` datasets; return an admin API token and the refs that have a version."""
    import pyarrow as pa

    from dataferry.engine.context import RunContext
    from dataferry.model.load import load_model
    from dataferry.server.auth import Auth
    from dataferry.store.publish import publish
    from dataferry.store.storage import store_schema

    if not generated:
        generate(root, teams)
    started = time.perf_counter()
    context = RunContext.from_loaded(load_model(root))
    print(f"model: {len(context.index.datasets):,} datasets, {len(context.index.consumers):,} "
          f"consumers, loaded in {time.perf_counter() - started:.1f} s")
    refs = [f"t{t}.d0" for t in range(min(published, teams))]
    for ref in refs:
        spec = context.index.datasets[ref].spec
        schema = store_schema(spec.columns)
        rows = 100
        columns = [pa.array(range(rows), pa.int64()) if field.name == "id"
                   else pa.nulls(rows, field.type) for field in schema]
        publish(context.store.dataset(ref), spec, pa.Table.from_arrays(columns, schema=schema),
                keys=context.store.keys)
    print(f"published one version of {len(refs)} datasets ({', '.join(refs[:3])}, ...)")
    auth = Auth.for_context(context)
    user = auth.accounts.add("bench", "admin", "tidal harbor lantern quartz", actor="bench")
    token = auth.tokens.create_api(user, "server-load", expires_in=timedelta(days=1),
                                   actor="bench").secret
    context.close()
    return token, refs


def start_server(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`ferry serve` in a process of its own; returns once /openapi.json answers."""
    command = [sys.executable, "-m", "dataferry.cli", "serve", "--no-scheduler",
               "--port", str(port), "--model", str(root)]
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ferry serve exited with {server.returncode}: see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"ferry serve did not answer within 120 s: see {log}")


def drive(url: str, token: str, paths: list[str], rate: float, seconds: float,
          warmup: float = 0.0) -> dict[str, Any]:
    """Send ``rate`` requests/s for ``warmup`` + ``seconds`` (paths picked at random,
    seeded): every latency in ms, from when each request was due, and the status codes,
    of the requests after the warm-up. The warm-up runs on the same connections, so the
    figures are the steady state, not this process starting its threads and connecting."""
    local = threading.local()
    rng = random.Random(7)
    skip = int(rate * warmup)
    total = skip + int(rate * seconds)
    latencies: list[float] = [0.0] * total
    statuses: list[int] = [0] * total

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=30,  # API: header; UI: cookie
                                        headers={"Authorization": f"Bearer {token}"},
                                        cookies={"ferry_session": token})
        found: httpx.Client = local.client
        return found

    def one(i: int, path: str, due: float) -> None:
        try:
            response = client().get(path)
            response.read()
            statuses[i] = response.status_code
        except httpx.HTTPError:
            statuses[i] = -1
        latencies[i] = (time.perf_counter() - due) * 1000

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        started = time.perf_counter()
        for i in range(total):
            due = started + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pool.submit(one, i, rng.choice(paths), due)
    elapsed = time.perf_counter() - started - skip / rate
    return {"latencies": latencies[skip:], "statuses": statuses[skip:], "elapsed": elapsed}


def drive_in_a_process(url: str, token: str, paths: list[str], rate: float,
                       seconds: float, warmup: float) -> dict[str, Any]:
    """``drive`` in a second process (the load must not share the server's process, nor
    this one's GIL with anything else)."""
    job = json.dumps({"url": url, "token": token, "paths": paths, "rate": rate,
                      "seconds": seconds, "warmup": warmup})
    done = subprocess.run([sys.executable, __file__, "--drive"], input=job, text=True,
                          capture_output=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def report(name: str, result: dict[str, Any], rate: float) -> bool:
    latencies, statuses = result["latencies"], result["statuses"]
    achieved = len(latencies) / result["elapsed"]
    bad = sum(1 for s in statuses if s != 200)
    p99 = percentile(latencies, 0.99)
    ok = p99 < TARGET_P99_MS and bad == 0 and achieved >= 0.95 * rate
    print(f"{name:<8} {len(latencies):>6} {achieved:>7.1f}/s  "
          f"{statistics.median(latencies):>6.1f} {percentile(latencies, 0.90):>6.1f} "
          f"{p99:>6.1f} {max(latencies):>7.1f}  {bad:>4}  "
          + ("ok" if ok else f"MISSED (p99 < {TARGET_P99_MS:.0f} ms at {rate:.0f}/s)"))
    return ok


def wrk_run(url: str, token: str, paths: list[str], seconds: float, folder: Path) -> str:
    """A closed-loop wrk run over ``paths`` (2 connections): its summary lines."""
    script = folder / "paths.lua"
    listed = ", ".join(json.dumps(p) for p in paths)
    script.write_text(
        f'local paths = {{{listed}}}\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f'wrk.headers["Cookie"] = "ferry_session={token}"\n'
        'math.randomseed(7)\n'
        'request = function() return wrk.format("GET", paths[math.random(#paths)]) end\n')
    done = subprocess.run(["wrk", "-t1", "-c2", f"-d{int(seconds)}s", "--latency", "-s",
                           str(script), url], capture_output=True, text=True, check=True)
    keep = ("Latency", "50%", "90%", "99%", "Requests/sec", "Non-2xx")
    return "\n".join("    " + line.strip() for line in done.stdout.splitlines()
                     if line.strip().startswith(keep))


def scenarios(url: str, token: str, teams: int, per_team: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(11)
    refs = [f"t{rng.randrange(teams)}.d{rng.randrange(per_team)}" for _ in range(500)]
    found = [("search", [f"/api/v1/datasets?search={quote(w)}" for w in WORDS]),
             ("detail", [f"/api/v1/datasets/{r}" for r in refs])]
    page = httpx.get(f"{url}/datasets/{refs[0]}", cookies={"ferry_session": token}, timeout=30)
    if page.status_code == 200 and page.headers.get("content-type", "").startswith("text/html"):
        found.append(("page", [f"/datasets/{r}" for r in refs]))
    else:
        print(f"(no web UI dataset page: GET /datasets/{{ref}} answered {page.status_code}; "
              "skipping that scenario)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--publish", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of load per scenario before measuring (same connections)")
    parser.add_argument("--keep", type=Path, help="generate the model here and keep it")
    parser.add_argument("--wrk", action="store_true", help="also a closed-loop wrk run")
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:  # the load generator process: a job on stdin, results on stdout
        job = json.loads(sys.stdin.read())
        json.dump(drive(job["url"], job["token"], job["paths"], job["rate"], job["seconds"],
                        job["warmup"]), sys.stdout)
        return 0
    folder = args.keep or Path(tempfile.mkdtemp(prefix="ferry-server-load-"))
    root = folder / "model"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    token, _ = prepare(root, args.teams, args.publish)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = start_server(root, port, folder / "serve.log")
    print(f"ferry serve (pid {server.pid}) up on {url} in {time.perf_counter() - started:.1f} s"
          f"; load from a second process at {args.rate:.0f} requests/s for "
          f"{args.seconds:.0f} s per scenario after {args.warmup:.0f} s of warm-up (latency from "
          "when each request was due)")
    ok = True
    try:
        wrk = args.wrk and shutil.which("wrk") is not None
        if args.wrk and not wrk:
            print("(wrk is not installed: apt-get install -y wrk; Python generator only)")
        planned = scenarios(url, token, args.teams, 10_000 // args.teams)
        for _, paths in planned:  # warm up: first search builds the listing index
            drive(url, token, paths, 50, 1)
        print(f"{'scenario':<8} {'reqs':>6} {'rate':>9}  {'p50':>6} {'p90':>6} {'p99':>6} "
              f"{'max':>7}  {'errs':>4}  (ms)")
        for name, paths in planned:
            ok &= report(name, drive_in_a_process(url, token, paths, args.rate, args.seconds,
                                                  args.warmup), args.rate)
            if wrk:
                print(wrk_run(url, token, paths, min(args.seconds, 10), folder))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
