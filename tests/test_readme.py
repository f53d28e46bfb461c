"""The README's two set-up commands stay what .ci/run and new users actually run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Start here")
    return re.findall(r"```sh\n(.+?)\n```", text[start:], flags=re.S)[:2]


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines(), f".ci/run must run exactly: {tests}"
    assert "FERRY_REQUIRE_SERVICES=1" in ci


def test_first_command_installs_and_runs_the_main_job() -> None:
    main, _ = readme_commands()
    assert main.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert main.endswith("ferry demo demo")
