"""A pull moves only what is new: after a 1% append or a 1% merge (deletion vectors),
a few percent of the dataset's bytes. A clone killed (SIGKILL) midway through a file
goes on from the bytes it has on the next run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from tests.replication.conftest import Origin, Ran
from tests.replication.tamper import lying_peer, stall_after_half

ROWS = 200_000


def _noise(start: int, count: int, seed: int) -> pa.Table:
    """Rows whose customer column does not compress: the files are megabytes."""
    generator = random.Random(seed)
    ids = list(range(start, start + count))
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "customer": [f"{generator.getrandbits(128):032x}" for _ in ids],
                     "amount": [generator.random() for _ in ids]})


def _bytes(origin: Origin) -> int:
    dataset = origin.dataset
    return sum(f.size for f in dataset.active_files(dataset.head_number() or 0))


def test_a_pull_after_a_one_percent_append_or_merge_moves_a_few_percent(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    origin.publish(_noise(100_001, ROWS, 1))
    clone = tmp_path / "clone"
    token = {"FERRY_TOKEN": origin.tokens["olga"]}
    with origin.served() as hub:
        assert cli("clone", f"{hub.url}/shop.orders", clone, env=token).code == 0
        origin.publish(_noise(400_001, ROWS // 100, 2))  # a 1% append
        appended = json.loads(cli("pull", clone, "--json", env=token).out)[0]
        total = _bytes(origin)
        print(f"1% append: {appended['bytes_fetched']:,} of {total:,} bytes")
        assert appended["files_fetched"] == 1 and appended["versions"] == [4]
        assert appended["bytes_fetched"] <= 0.02 * total, (appended, total)
        changed = random.Random(3).sample(range(100_001, 100_001 + ROWS), ROWS // 100)
        merge = _noise(0, len(changed), 4).set_column(0, "id", pa.array(changed, pa.int64()))
        origin.publish(merge, "merge")  # 1% of the rows, spread over the files
        merged = json.loads(cli("pull", clone, "--json", env=token).out)[0]
        print(f"1% merge: {merged['bytes_fetched']:,} of {_bytes(origin):,} bytes")
        assert merged["versions"] == [5]
        assert merged["bytes_fetched"] <= 0.03 * _bytes(origin), (merged, _bytes(origin))
    assert cli("verify", "--store", clone).code == 0


def test_a_clone_killed_midway_goes_on_from_the_bytes_it_has(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    origin.publish(_noise(100_001, ROWS, 1))
    clone = tmp_path / "clone"
    env = {**os.environ, "FERRY_TOKEN": origin.tokens["olga"]}
    release = threading.Event()
    with origin.served() as hub, lying_peer(hub.url) as peer:
        peer.tamper = stall_after_half(release)
        ferry = Path(sys.executable).parent / "ferry"
        process = subprocess.Popen([str(ferry), "clone", f"{peer.url}/shop.orders", str(clone)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        incoming = clone / "shop" / "orders" / "_sig" / ".incoming"
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size > 1 << 20 for p in incoming.glob("*.part")):
            assert time.monotonic() < deadline and process.poll() is None, "no partial file"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait()
        release.set()
        (part,) = incoming.glob("*.part")
        had = part.stat().st_size
        peer.tamper = None
        peer.requests.clear()
        resumed = cli("clone", f"{peer.url}/shop.orders", clone, "--json",
                      env={"FERRY_TOKEN": origin.tokens["olga"]})
        assert resumed.code == 0, resumed
    ranges = [r for p, r in peer.requests if p.endswith(".parquet")]
    assert f"bytes={had}-" in ranges, peer.requests
    size = max(f.size for f in origin.dataset.version(3).manifest.files)
    result = json.loads(resumed.out)
    assert result["before"] == 2 and result["versions"] == [3]  # 1 and 2 were complete
    assert result["bytes_fetched"] < size - had + 64 * 1024, (result, had, size)
    assert cli("verify", "--store", clone).code == 0


def test_a_changed_byte_costs_a_re_fetch_from_its_chunk_on_not_the_whole_file(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    from tests.replication.tamper import on_data_files

    origin.publish(_noise(100_001, ROWS, 1))
    entry = origin.dataset.version(3).manifest.files[0]
    assert entry.size > 3 * entry.chunk_size
    bad = entry.chunk_size * 3 + 100  # in the fourth chunk

    def flip(body: bytes) -> bytes:
        if len(body) != entry.size:
            return body
        return body[:bad] + bytes([body[bad] ^ 1]) + body[bad + 1:]

    clone = tmp_path / "clone"
    env = {"FERRY_TOKEN": origin.tokens["olga"]}
    with origin.served() as hub, lying_peer(hub.url) as peer:
        peer.tamper = on_data_files(flip)
        lied = cli("clone", f"{peer.url}/shop.orders", clone, env=env)
        assert lied.code == 1 and "a changed byte" in lied.err, lied
        peer.tamper = None
        peer.requests.clear()
        resumed = cli("clone", f"{peer.url}/shop.orders", clone, env=env)
        assert resumed.code == 0, resumed
    assert [r for p, r in peer.requests if entry.path in p] == [f"bytes={entry.chunk_size * 3}-"]
    assert cli("verify", "--store", clone).code == 0
