"""The private-network harness itself (tests/agent/netns.py): what is inside is out of the
root namespace's reach, what is inside reaches the hub's address, a ``ferry`` process
inside can ingest from the inside PostgreSQL, and nothing is left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.agent.netns import (
    DATA_PREFIX,
    NAMESPACE_PREFIX,
    VETH_PREFIX,
    PrivateNetwork,
    clean_stale,
    open_private_network,
)
from tests.conftest import Result, write_files

FERRY = Path(sys.executable).with_name("ferry")


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def test_the_root_namespace_cannot_reach_the_inside_database(
        private_network: PrivateNetwork) -> None:
    pg = private_network.pg
    started = time.monotonic()
    assert not private_network.reachable_from_root(pg.host, pg.port)
    assert not private_network.reachable_from_root("127.0.0.1", pg.port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn("postgres"), password=pg.password, connect_timeout=5)
    # refused at once (a TCP reset), not after a connect timeout
    assert time.monotonic() - started < 4
    # ... while the database is up and listens on the inside address
    listening = {(s.address, s.port) for s in
                 private_network.listening_sockets(private_network.postmaster_pid)}
    assert listening == {(pg.host, pg.port), ("127.0.0.1", pg.port)}


PROBE = """\
import os, psycopg
with psycopg.connect(os.environ["DSN"], password=os.environ.get("PGPASS"),
                     connect_timeout=5) as c:
    print(c.execute("select current_user, inet_server_addr()").fetchone())
"""


def test_a_process_inside_reaches_the_database_with_its_password_only(
        private_network: PrivateNetwork) -> None:
    pg = private_network.pg
    for host in (pg.host, "127.0.0.1"):
        dsn = f"postgresql://{pg.user}@{host}:{pg.port}/postgres"
        done = private_network.run([sys.executable, "-c", PROBE],
                                   env={**os.environ, "DSN": dsn, "PGPASS": pg.password})
        assert done.returncode == 0, done.stderr
        assert f"('postgres', IPv4Address('{host}'))" in done.stdout
        wrong = private_network.run([sys.executable, "-c", PROBE],
                                    env={**os.environ, "DSN": dsn, "PGPASS": "not-it"})
        assert wrong.returncode != 0
        assert "password authentication failed" in wrong.stderr


def test_the_inside_reaches_a_hub_on_the_hub_address(private_network: PrivateNetwork) -> None:
    for bind in (private_network.hub_ip, "0.0.0.0"):
        with socket.socket() as hub:
            hub.bind((bind, 0))
            hub.listen(4)
            port = hub.getsockname()[1]
            assert private_network.reachable_from_inside(private_network.hub_ip, port)
    with socket.socket() as loopback_only:
        loopback_only.bind(("127.0.0.1", 0))
        loopback_only.listen(4)
        # the namespace's 127.0.0.1 is its own: a hub on the root's loopback is out of reach
        assert not private_network.reachable_from_inside("127.0.0.1",
                                                         loopback_only.getsockname()[1])


def test_listening_sockets_names_what_a_process_inside_listens_on(
        private_network: PrivateNetwork) -> None:
    quiet = private_network.popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = private_network.popen(
        [sys.executable, "-c",
         "import socket, sys, time\n"
         "s = socket.socket(); s.bind(('0.0.0.0', 0)); s.listen(1)\n"
         "u = socket.socket(type=socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
         "print(s.getsockname()[1], u.getsockname()[1], flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        tcp_port, udp_port = (int(p) for p in server.stdout.readline().split())
        found = {(s.protocol, s.address, s.port, s.pid)
                 for s in private_network.listening_sockets(server.pid)}
        assert found == {("tcp", "0.0.0.0", tcp_port, server.pid),
                         ("udp", "127.0.0.1", udp_port, server.pid)}
        assert private_network.listening_sockets(quiet.pid) == []
    finally:
        quiet.kill()
        server.kill()
        quiet.wait()
        server.wait()


SHOP = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: postgres
    dsn: {dsn}
    password: ${{env:SHOP_PG_PASSWORD}}
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          item: {{type: string}}
"""


def test_ferry_run_inside_ingests_from_the_inside_database(
        private_network: PrivateNetwork, tmp_path: Path,
        ferry: Callable[..., Result]) -> None:
    dsn = private_network.create_database("shop_run")
    private_network.psql("shop_run", "create table orders (id bigint primary key, item text); "
                         "insert into orders select g, 'item ' || g from generate_series(1, 250) g")
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": SHOP.format(dsn=dsn)})
    env = {**os.environ, "SHOP_PG_PASSWORD": private_network.pg.password}
    done = private_network.run([FERRY, "run", "shop.orders", "--model", root, "--json"], env=env)
    assert done.returncode == 0, done.stderr
    [job] = json.loads(done.stdout)
    assert (job["job"], job["status"], job["rows"]) == ("ingest:shop.orders", "succeeded", 250)
    shown = ferry("show", "shop.orders", "--limit", "3", "--model", root, "--json")
    assert shown.code == 0, shown
    version = json.loads(shown.out)
    assert version["rows_total"] == 250
    assert version["rows"][0] == {"id": 1, "item": "item 1"}
    # the same run from the root namespace cannot reach the source, and says so
    os.environ["SHOP_PG_PASSWORD"] = private_network.pg.password
    try:
        outside = ferry("run", "shop.orders", "--model", root, "--attempts", "1", "--full")
    finally:
        del os.environ["SHOP_PG_PASSWORD"]
    assert outside.code == 1, outside
    assert "Connection refused" in outside.err
    assert private_network.pg.password not in outside.out + outside.err


def test_closing_removes_everything_also_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="boom"), open_private_network() as network:
        sleeper = network.popen(["sleep", "300"])
        postmaster, directory = network.postmaster_pid, network.directory
        raise RuntimeError("boom")
    assert network.name not in namespaces()
    assert network.veth not in links()
    assert not directory.exists()
    assert sleeper.poll() is not None
    assert not Path(f"/proc/{postmaster}").exists()


def test_leftovers_of_a_dead_run_are_cleaned() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid nobody owns any more
    name, veth = f"{NAMESPACE_PREFIX}{gone.pid}-7", f"{VETH_PREFIX}{gone.pid}-7"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "x0", "netns",
                    name], check=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "300"])
    removed = clean_stale()
    assert name in removed
    assert name not in namespaces() and veth not in links()
    assert orphan.wait(10) == -9
    # a live owner's namespace is left alone
    with open_private_network() as network:
        assert network.name not in clean_stale()
        assert network.name in namespaces()
    # ... but not one whose pid the kernel gave to another process since (this one, here)
    reused = f"{NAMESPACE_PREFIX}{os.getpid()}-99"
    data = Path(tempfile.mkdtemp(prefix=f"{DATA_PREFIX}{os.getpid()}-99-"))
    (data / "owner").write_text("1\n")  # started a tick after boot: another process
    subprocess.run(["ip", "netns", "add", reused], check=True)
    removed = clean_stale()
    assert reused in removed and str(data) in removed
    assert reused not in namespaces() and not data.exists()
