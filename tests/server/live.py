"""Real servers on loopback for tests that need real HTTP: concurrency, proxies, sockets.

``uvicorn_in_thread(app)`` runs an app in this process (it shares the test's clock and
database); ``ferry_serve(root, ...)`` starts ``ferry serve`` as its own process, as an
operator would, so its flags, its uvicorn configuration and its memory are the real ones.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

START_SECONDS = 60


@contextmanager
def uvicorn_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))  # a free port, held from now on: no race for it
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]},
                              name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


@dataclass(frozen=True)
class Served:
    """A running ``ferry serve``: where it answers and its process (for its memory)."""

    url: str
    port: int
    process: subprocess.Popen[bytes]

    def rss_kib(self) -> int:
        """The server process's resident memory now (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])


@contextmanager
def ferry_serve(root: Path, *args: str, scheduler: bool = False) -> Iterator[Served]:
    """``ferry serve --no-scheduler --model ROOT ARGS`` on a free port, until the block ends
    (``scheduler``: without ``--no-scheduler``).

    FORWARDED_ALLOW_IPS is removed from its environment: uvicorn would read it, and a
    test of the default must not depend on the machine it runs on.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    ferry = Path(sys.executable).parent / "ferry"
    env = {name: value for name, value in os.environ.items() if name != "FORWARDED_ALLOW_IPS"}
    log = root.parent / f"serve-{port}.log"  # a file: a full pipe would stall the server
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(ferry), "serve", "--port", str(port),
             *([] if scheduler else ["--no-scheduler"]), "--model", str(root), *args],
            env=env, stdout=output, stderr=subprocess.STDOUT)
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


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ferry serve exited with {process.returncode}: "
                                 f"{log.read_text(errors='replace')}")
        try:
            httpx.get(f"{url}/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"ferry serve did not answer at {url} within {START_SECONDS} s")
