"""Outside tools in virtual environments of their own, for tests that check that other
programs read what dataferry writes (their pins may clash with ours, e.g. an older DuckDB).

Each environment is built once, under ``~/.cache/dataferry-tests/tools/<name>`` (or
``$FERRY_TOOLS_CACHE``), with the machine's ordinary ``pip``; a test whose tool cannot be
installed is skipped with pip's reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _cache() -> Path:
    root = os.environ.get("FERRY_TOOLS_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "dataferry-tests" / "tools"


def tool_venv(name: str, requirements: list[str]) -> Path:
    """The ``bin`` folder of a virtual environment holding ``requirements``, built once
    (test workers wait on a lock file for the one building it)."""
    home = _cache() / name
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".complete").exists():
            shutil.rmtree(home, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True,
                           capture_output=True)
            pip = subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q",
                                  "--disable-pip-version-check", *requirements],
                                 capture_output=True, text=True)
            if pip.returncode != 0:
                reason = (pip.stderr.strip().splitlines() or ["no output"])[-1]
                pytest.skip(f"cannot install {' '.join(requirements)} for this test: {reason}")
            (home / ".complete").touch()
    return home / "bin"


def run_tool(program: Path, *args: str) -> str:
    """Run an outside tool; its standard output, or the test fails with its error."""
    done = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{program.name} {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout
