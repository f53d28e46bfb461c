"""``ferry pull --watch`` applies a version published at the origin within 2 seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.replication.conftest import Origin, Ran, orders


def test_pull_watch_applies_a_published_version_within_two_seconds(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    env = {**os.environ, "FERRY_TOKEN": origin.tokens["olga"]}
    signature = clone / "shop" / "orders" / "_sig" / "m" / f"{3:012d}.sig"
    with origin.served() as hub:
        assert cli("clone", f"{hub.url}/shop.orders", clone, env=env).code == 0
        output = tmp_path / "watch.out"
        with output.open("wb") as out:
            watcher = subprocess.Popen(
                [str(Path(sys.executable).parent / "ferry"), "pull", str(clone), "--watch",
                 "--json"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(3)  # connected, waiting on the head
            origin.publish(orders(7001, 100))
            published = time.monotonic()
            while not signature.exists():
                assert time.monotonic() - published < 10, output.read_text()
                time.sleep(0.05)
            took = time.monotonic() - published
        finally:
            watcher.terminate()
            watcher.wait(timeout=60)
    print(f"pull --watch applied version 3 {took:.2f} s after it was published")
    assert took < 2.0, output.read_text()
    lines = [json.loads(line) for line in output.read_text().splitlines()
             if line.startswith("{")]
    assert lines[-1]["versions"] == [3]
    assert cli("verify", "--store", clone).code == 0
