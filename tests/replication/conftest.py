"""An origin for replication tests: a model with users and tokens, data published into
its store, and real ``ferry serve`` processes (with the model, or ``--store --anonymous``)
on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.auth import Auth
from dataferry.store.dataset import DatasetStore
from dataferry.store.publish import publish
from tests.conftest import write_files
from tests.server.conftest import FAST, PASSWORD
from tests.server.live import Served, _wait_until_up, ferry_serve

SHOP = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          customer: {type: string}
          amount: {type: float64}
"""
OPS = """\
team: ops
zone: eu
owners: [olga@acme.example]
consumers:
  mirror:
    sink: {kind: duckdb, path: out/ops.duckdb}
    datasets:
      - {ref: shop.orders}
"""
BI = """\
team: bi
zone: eu
owners: [bea@acme.example]
consumers:
  report:
    sink: {kind: duckdb, path: out/bi.duckdb}
    datasets:
      - {ref: shop.orders, columns: [id, amount]}
"""
USERS = {  # name: (role, teams)
    "root": ("admin", []),
    "alice": ("member", ["shop"]),
    "olga": ("member", ["ops"]),
    "bea": ("member", ["bi"]),
    "vic": ("viewer", []),
}


def orders(start: int, count: int) -> pa.Table:
    ids = list(range(start, start + count))
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "customer": [f"customer {i % 97}" for i in ids],
                     "amount": [i * 1.25 for i in ids]})


@dataclass
class Origin:
    """The origin model: its store, and a way to publish and to serve it."""

    root: Path
    context: RunContext
    tokens: dict[str, str]

    @property
    def dataset(self) -> DatasetStore:
        return self.context.store.dataset("shop.orders")

    def publish(self, data: pa.Table, mode: str = "append") -> int:
        spec = self.context.index.datasets["shop.orders"].spec
        published = publish(self.dataset, spec, data, keys=self.context.store.keys,
                            mode=mode)  # type: ignore[arg-type]
        return int(published.version)

    @contextmanager
    def served(self) -> Iterator[Served]:
        with ferry_serve(self.root) as served:
            yield served


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": SHOP, "teams/ops/ops.yaml": OPS, "teams/bi/bi.yaml": BI})
    context = RunContext.from_loaded(load_model(root))
    auth = Auth.for_context(context, FAST)
    tokens = {}
    for name, (role, teams) in USERS.items():
        auth.accounts.add(name, role, PASSWORD, actor="test", teams=teams)
        tokens[name] = auth.tokens.create_api(auth.accounts.get(name), "clone", actor="test",
                                              expires_in=timedelta(days=1)).secret
    found = Origin(root, context, tokens)
    found.publish(orders(1, 3000), "replace")
    found.publish(orders(3001, 1000))
    yield found
    context.close()


@contextmanager
def serve_store(directory: Path, *args: str) -> Iterator[Served]:
    """``ferry serve --store DIR ARGS`` on a free port until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    ferry = Path(sys.executable).parent / "ferry"
    log = directory.parent / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(ferry), "serve", "--port", str(port), "--store",
                                    str(directory), *args], env=dict(os.environ),
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log)
        yield Served(url, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli() -> Callable[..., Ran]:
    """``ferry ARGS`` as its own process (as users run it): exit code, stdout, stderr."""
    ferry = Path(sys.executable).parent / "ferry"

    def run(*args: str | Path, env: dict[str, str] | None = None) -> Ran:
        done = subprocess.run([str(ferry), *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=300)
        return Ran(done.returncode, done.stdout, done.stderr)

    return run
