"""Shared test helpers: model directories on disk, running ``ferry``, service checks."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataferry.cli.main import invoke
from dataferry.metadata import Metadata, open_metadata

SERVICES = {
    "postgres": 5432,
    "mariadb": 3306,
    "redis": 6379,
    "rabbitmq": 5672,
    "mosquitto": 1883,
    "nats": 4222,
}


def require_service(name: str) -> None:
    """Skip (or, with FERRY_REQUIRE_SERVICES=1 as in CI, fail) when a service is down."""
    port = SERVICES[name]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return
    except OSError:
        message = f"{name} is not running on 127.0.0.1:{port} (start it: bash .ci/services.sh)"
        if os.environ.get("FERRY_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


ECOSYSTEM = """\
ecosystem: acme
zones:
  eu: {export_classifications: [public, internal]}
  us: {}
platforms:
  local: {engine: duckdb}
  hq: {engine: duckdb, network: hq-lan}
admins: [admin@acme.example]
"""


@pytest.fixture(autouse=True, scope="session")
def _session_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands keep their checked models (``dataferry.model.cache``) in the session's
    temporary directory, not in the user's ~/.cache: also those that module- and
    session-scoped fixtures run (servers, pipelines set up once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FERRY_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))
        yield


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's commands keep their checked models in a directory of their own."""
    monkeypatch.setenv("FERRY_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.fixture
def model(tmp_path: Path) -> Callable[..., Path]:
    """``model({"teams/crm/crm.yaml": "..."})`` writes a model (with a default ferry.yaml)."""

    def make(files: dict[str, str] | None = None, *, ecosystem: str = ECOSYSTEM) -> Path:
        root = tmp_path / "model"
        root.mkdir(exist_ok=True)
        return write_files(root, {"ferry.yaml": ecosystem, **(files or {})})

    return make


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def ferry(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``ferry ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        code = invoke([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env=env,
                          check=True)
    return done.stdout


class FakeClock:
    """A clock that stands still until a test moves it: leases expire without sleeping."""

    def __init__(self, start: datetime = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def db(url: str) -> Iterator[Metadata]:
    """An open, migrated metadata database at the ``url`` its test folder provides."""
    with open_metadata(url) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
