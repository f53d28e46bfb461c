"""A private network for the gateway agent's tests: a Linux network namespace with a
PostgreSQL of its own that only processes inside it can reach.

``open_private_network()`` builds, as root:

- a network namespace ``ferry-a-<pid>-<n>`` with its loopback up, joined to the root
  namespace by a veth pair on a free /30 (``hub_ip`` on the root side, ``inside_ip``
  inside);
- a firewall inside it (nftables) that lets connections out and their answers back in,
  and refuses (TCP reset) every connection into it from the veth, as the NAT or firewall
  in front of a real private network does. Processes in the namespace reach a hub bound on
  ``hub_ip`` (or 0.0.0.0) in the root namespace; nothing in the root namespace reaches
  anything inside;
- a PostgreSQL cluster in a temporary directory, run as the ``postgres`` OS user inside
  the namespace, listening on ``127.0.0.1`` and ``inside_ip`` only (no Unix socket: a
  socket file would be reachable from the root namespace), with scram-sha-256 password
  authentication and a random password.

Everything is removed by ``close()`` (the context manager and an ``atexit`` hook call it),
and ``clean_stale()`` removes what a crashed earlier run left: namespaces, veths and data
directories of this prefix whose owning process is dead.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMESPACE_PREFIX = "ferry-a-"
VETH_PREFIX = "fh"  # root side of the pair: fh<pid>-<n> (interface names: 15 characters)
INSIDE_VETH = "ferry0"
DATA_PREFIX = "ferry-netns-"
POOLS = (ipaddress.IPv4Network("10.213.0.0/16"), ipaddress.IPv4Network("172.30.0.0/16"))
LOCK_PATH = Path("/run/lock/ferry-netns.lock")
READY_TIMEOUT = 20.0

_NAMESPACE_NAME = re.compile(rf"^{re.escape(NAMESPACE_PREFIX)}(\d+)-(\d+)$")
_VETH_NAME = re.compile(rf"^{VETH_PREFIX}(\d+)-(\d+)$")
_DATA_NAME = re.compile(rf"^{re.escape(DATA_PREFIX)}(\d+)-(\d+)-")
_SS_PROCESS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_counter = itertools.count()

FIREWALL = """\
table inet ferry_private_network {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "lo" accept
    ct state established,related accept
    meta l4proto { icmp, ipv6-icmp } accept
    meta l4proto tcp reject with tcp reset
    reject
  }
}
"""


class NamespacesUnavailable(Exception):
    """This machine (or user) cannot build a private network; the message says why."""


@dataclass(frozen=True)
class PostgresInside:
    """How processes inside the namespace reach its PostgreSQL (the hub cannot)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)

    def dsn(self, dbname: str) -> str:
        """A dsn without the password (give it as ``password: ${env:...}``)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"


@dataclass(frozen=True)
class Listening:
    """One listening (TCP) or bound (UDP) socket in the namespace, as ``ss`` shows it."""

    protocol: str
    address: str
    port: int
    pid: int
    process: str


def available() -> str | None:
    """Why a private network cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the agent's isolation tests as root)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("ss", "iproute2"),
                          ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt-get install {package}; bash .ci/services.sh does)"
    if _postgres_bin() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    try:
        import pwd
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' OS user to run PostgreSQL as (initdb refuses root)"
    return None


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def _run(args: Sequence[str], *, stdin: str | None = None, check: bool = True,
         env: Mapping[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                          env=dict(env) if env is not None else None, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot), or None if it is not running: a pid
    the kernel reused for another process has another start."""
    with contextlib.suppress(OSError, IndexError):
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()[19]
    return None


def _owner_alive(pid: int, serial: str) -> bool:
    """Whether the process that built network ``<pid>-<serial>`` still runs (its start is
    kept in the data directory's ``owner`` file)."""
    if not _alive(pid):
        return False
    for directory in Path(tempfile.gettempdir()).glob(f"{DATA_PREFIX}{pid}-{serial}-*"):
        with contextlib.suppress(OSError):
            return (directory / "owner").read_text().strip() == _started(pid)
    return True  # no record: assume it is (a leak at worst, never a live run's network)


def _kill_namespace_processes(name: str) -> None:
    done = _run(["ip", "netns", "pids", name], check=False)
    for pid in (int(p) for p in done.stdout.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_namespace(name: str, veth: str) -> None:
    _kill_namespace_processes(name)
    _run(["ip", "link", "del", veth], check=False)
    _run(["ip", "netns", "del", name], check=False)


def clean_stale() -> list[str]:
    """Remove namespaces, veths and data directories of this prefix whose owning process
    (the pid in their name) is dead; returns what was removed."""
    removed: list[str] = []
    names = _run(["ip", "netns", "list"], check=False).stdout.split("\n")
    for line in names:
        name = line.split(" ")[0]
        match = _NAMESPACE_NAME.match(name)
        if match and not _owner_alive(int(match[1]), match[2]):
            _remove_namespace(name, f"{VETH_PREFIX}{match[1]}-{match[2]}")
            removed.append(name)
    links = _run(["ip", "-o", "link", "show"], check=False).stdout.split("\n")
    for line in links:
        parts = line.split(": ")
        veth = parts[1].split("@")[0] if len(parts) > 1 else ""
        match = _VETH_NAME.match(veth)
        if match and not _owner_alive(int(match[1]), match[2]):
            _run(["ip", "link", "del", veth], check=False)
            removed.append(veth)
    for directory in Path(tempfile.gettempdir()).glob(f"{DATA_PREFIX}*"):
        match = _DATA_NAME.match(directory.name)
        if match and not _owner_alive(int(match[1]), match[2]):
            _stop_postmaster(directory / "data")
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(str(directory))
    return removed


def _stop_postmaster(data: Path) -> None:
    """Kill a postmaster a dead run left behind (its pid is postmaster.pid's first line)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().split("\n")[0])
        os.kill(pid, signal.SIGKILL)


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in _run(["ip", "-4", "-o", "addr", "show"]).stdout.split("\n"):
        words = line.split()
        if "inet" in words:
            used.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    for line in _run(["ip", "-4", "route", "show", "table", "all"]).stdout.split("\n"):
        words = line.split()
        start = 1 if words and words[0] in ("local", "broadcast", "unreachable", "blackhole",
                                            "prohibit", "throw", "unicast") else 0
        if len(words) > start and words[start] != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(words[start], strict=False))
    return used


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    offset = os.getpid() % 4096
    for pool in POOLS:
        subnets = list(pool.subnets(new_prefix=30))
        for subnet in subnets[offset:] + subnets[:offset]:
            if not any(other.version == 4 and subnet.overlaps(other) for other in used):
                return subnet
    raise NamespacesUnavailable(f"no free /30 left in {', '.join(map(str, POOLS))}")


def _free_port() -> int:
    """A port nothing in the root namespace listens on (so a mistaken connection to it
    there is refused instead of reaching some other server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Serialise choosing a subnet between concurrent test processes."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class PrivateNetwork:
    """A built private network; see the module docstring. ``close()`` removes it."""

    def __init__(self) -> None:
        reason = available()
        if reason is not None:
            raise NamespacesUnavailable(reason)
        started = time.monotonic()
        serial = next(_counter)
        self.name = f"{NAMESPACE_PREFIX}{os.getpid()}-{serial}"
        self.veth = f"{VETH_PREFIX}{os.getpid()}-{serial}"
        self.directory = Path(tempfile.mkdtemp(prefix=f"{DATA_PREFIX}{os.getpid()}-{serial}-"))
        (self.directory / "owner").write_text(f"{_started(os.getpid())}\n")
        self._postmaster: subprocess.Popen[bytes] | None = None
        self._children: list[subprocess.Popen[Any]] = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._build_network()
            self.pg = self._start_postgres()
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - started

    # --- building ---------------------------------------------------------------------

    def _build_network(self) -> None:
        with _allocation_lock():
            subnet = _free_subnet()
            hub, inside = list(subnet.hosts())
            self.subnet, self.hub_ip, self.inside_ip = str(subnet), str(hub), str(inside)
            add = _run(["ip", "netns", "add", self.name], check=False)
            if add.returncode != 0:
                raise NamespacesUnavailable(f"'ip netns add' was refused: {add.stderr.strip()}")
            _run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", INSIDE_VETH,
                  "netns", self.name])
            _run(["ip", "addr", "add", f"{hub}/30", "dev", self.veth])
        _run(["ip", "link", "set", self.veth, "up"])
        inside_ip = ["ip", "-n", self.name]
        _run([*inside_ip, "addr", "add", f"{inside}/30", "dev", INSIDE_VETH])
        _run([*inside_ip, "link", "set", INSIDE_VETH, "up"])
        _run([*inside_ip, "link", "set", "lo", "up"])
        _run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], stdin=FIREWALL)

    def _start_postgres(self) -> PostgresInside:
        binaries = _postgres_bin()
        assert binaries is not None  # available() checked
        self._psql = str(binaries / "psql")
        password = "pg-" + secrets.token_urlsafe(18)
        port = _free_port()
        data = self.directory / "data"
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        shutil.chown(self.directory, "postgres", "postgres")
        self.directory.chmod(0o700)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        _run([*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
              f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
              "--no-sync"], timeout=120)
        pwfile.unlink()
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1,{self.inside_ip}'\nport = {port}\n"
                       "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
                       "full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n"
                       "password_encryption = 'scram-sha-256'\n")
        (data / "pg_hba.conf").write_text(
            "# the namespace's loopback and its veth subnet, with a password; nothing else\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            f"host all all {self.subnet} scram-sha-256\n")
        log = open(self.directory / "postgres.log", "wb")  # noqa: SIM115 - closed in close()
        self._log = log
        self._postmaster = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *as_postgres, str(binaries / "postgres"),
             "-D", str(data)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self._wait_ready(data)
        return PostgresInside(self.inside_ip, port, "postgres", password)

    def _wait_ready(self, data: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        assert self._postmaster is not None
        while time.monotonic() < deadline:
            if self._postmaster.poll() is not None:
                raise RuntimeError(f"PostgreSQL in {self.name} exited: {self.postgres_log()}")
            with contextlib.suppress(OSError):
                lines = (data / "postmaster.pid").read_text().split("\n")
                if len(lines) > 7 and lines[7].strip() == "ready":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL in {self.name} was not ready after {READY_TIMEOUT:.0f} s: "
                           f"{self.postgres_log()}")

    # --- using it ---------------------------------------------------------------------

    @property
    def postmaster_pid(self) -> int:
        assert self._postmaster is not None
        return self._postmaster.pid

    def postgres_log(self) -> str:
        """The inside PostgreSQL's log (its last 4,000 characters)."""
        with contextlib.suppress(OSError):
            return (self.directory / "postgres.log").read_text(errors="replace")[-4000:]
        return ""

    def command(self, args: Sequence[str | os.PathLike[str]]) -> list[str]:
        """``args`` as a command line that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *(os.fspath(a) for a in args)]

    def popen(self, args: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` inside the namespace (``ip netns exec`` execs it: the returned
        process's pid is the command's). ``close()`` kills it if it is still running."""
        process = subprocess.Popen(self.command(args), env=dict(env) if env is not None else None,
                                   **kwargs)
        self._children.append(process)
        return process

    def run(self, args: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside the namespace to its end; stdout and stderr as text."""
        return subprocess.run(self.command(args), env=dict(env) if env is not None else None,
                              capture_output=True, text=True, timeout=timeout)

    def psql(self, dbname: str, sql: str) -> str:
        """Run ``sql`` in database ``dbname`` of the inside PostgreSQL (as its superuser,
        from inside the namespace); returns the unaligned, tuples-only output."""
        done = self.run([self._psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", self.pg.user,
                         "-d", dbname, "-c", sql],
                        env={**os.environ, "PGPASSWORD": self.pg.password, "PGCONNECT_TIMEOUT": "5"})
        if done.returncode != 0:
            raise RuntimeError(f"psql in {self.name} ({dbname}) failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new database ``name`` in the inside PostgreSQL; returns its dsn."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*")
        self.psql("postgres", f"create database {name}")
        return self.pg.dsn(name)

    def listening_sockets(self, pid: int, *, descendants: bool = True) -> list[Listening]:
        """The sockets ``pid`` (and, by default, its descendants) listen on or have bound
        (UDP) inside the namespace, from ``ss -ltnup``."""
        pids = {pid, *(_descendants(pid) if descendants else ())}
        done = _run(self.command(["ss", "-ltnupH"]))
        return [s for s in parse_listening(done.stdout) if s.pid in pids]

    def reachable_from_root(self, host: str, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from the root namespace (this process) to host:port
        is accepted."""
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False

    def reachable_from_inside(self, host: str, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from inside the namespace to host:port is accepted."""
        probe = ("import socket, sys\n"
                 "try:\n"
                 f"    socket.create_connection(({host!r}, {port}), timeout={timeout}).close()\n"
                 "except OSError:\n"
                 "    sys.exit(1)\n")
        return self.run([sys.executable, "-c", probe], timeout=timeout + 30).returncode == 0

    # --- removing it ------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything inside, remove the namespace, the veth and the data. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        for child in self._children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(5)
        if self._postmaster is not None and self._postmaster.poll() is None:
            self._postmaster.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self._postmaster.wait(10)
            except subprocess.TimeoutExpired:
                self._postmaster.kill()
                self._postmaster.wait(5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        _remove_namespace(self.name, self.veth)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrivateNetwork({self.name}, inside {getattr(self, 'inside_ip', '?')})"


def parse_listening(ss_output: str) -> list[Listening]:
    """The sockets in ``ss -ltnupH`` output, one per owning process: ``tcp LISTEN 0 128
    [::ffff:10.0.0.2]%eth0:5432 [::]:* users:(("postgres",pid=7,fd=6))`` gives
    ``Listening("tcp", "::ffff:10.0.0.2", 5432, 7, "postgres")``."""
    found: list[Listening] = []
    for line in ss_output.splitlines():
        words = line.split()
        if len(words) < 5:
            continue
        address, _, port = words[4].rpartition(":")
        address = address.split("%", 1)[0].removeprefix("[").split("]", 1)[0]
        for process, owner in _SS_PROCESS.findall(line):
            found.append(Listening(words[0], address, int(port) if port.isdigit() else 0,
                                   int(owner), process))
    return found


def _descendants(pid: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def open_private_network() -> PrivateNetwork:
    """Clean leftovers of crashed runs, then build a new private network."""
    reason = available()
    if reason is not None:
        raise NamespacesUnavailable(reason)
    clean_stale()
    return PrivateNetwork()

