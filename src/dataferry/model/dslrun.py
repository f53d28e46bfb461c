"""Run Python DSL files in a separate process with a timeout.

The parent (``run_dsl_files``) starts ``python -m dataferry.model.dslrun FILE...`` in the
model directory. The child runs each file and writes one JSON line per file to a private
copy of stdout (the user's ``print`` goes to stderr): ``{"file", "begin": true}`` before
running it, then ``{"file", "teams": [...]}`` or ``{"file", "error", "line"}``. A file
that hangs, crashes the interpreter or exits becomes a ``parse-error`` naming it; files
after it are run again in a new process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Any

from dataferry.model.findings import Report
from dataferry.model.yamlfile import Mapping, Mark, Sequence

DEFAULT_TIMEOUT = 30.0


def dsl_timeout() -> float:
    """Seconds one DSL file may run (``FERRY_DSL_TIMEOUT``, default 30)."""
    try:
        return float(os.environ.get("FERRY_DSL_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_dsl_files(
    root: FsPath, files: list[str], report: Report
) -> Iterator[tuple[str, Mapping]]:
    """Run ``files`` (relative to ``root``) and yield (file, positioned raw team) pairs."""
    remaining = list(files)
    while remaining:
        begun: str | None = None
        outcome = _Outcome()
        for message in _run(root, remaining, outcome):
            rel = message["file"]
            if message.get("begin"):
                begun = rel
                continue
            begun = None
            if "error" in message:
                report.add_at("parse-error", message["error"], rel, (message.get("line") or 0, 1))
                continue
            for team in message["teams"]:
                yield rel, _positioned(team["raw"], team["marks"])
        if begun is None:
            return
        if outcome.timed_out:
            why = f"did not finish within {dsl_timeout():g} s (an endless loop?)"
        else:
            last = outcome.stderr.strip().splitlines()[-1:] or [""]
            why = f"the Python process died (exit code {outcome.code}) while running it"
            why += f": {last[0]}" if last[0] else ""
        report.add_at("parse-error", why, begun, None)
        remaining = remaining[remaining.index(begun) + 1 :]


class _Outcome:
    timed_out = False
    code: int | None = None
    stderr = ""


def _run(root: FsPath, files: list[str], outcome: _Outcome) -> Iterator[dict[str, Any]]:
    """Start the child and yield its messages; a file running too long kills the child."""
    import selectors
    import tempfile

    command = [sys.executable, "-m", "dataferry.model.dslrun", *files]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=errors, env=env
    ) as child:
        assert child.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ)
        buffer = b""
        deadline = time.monotonic() + dsl_timeout()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                child.kill()
                outcome.timed_out = True
                break
            if not selector.select(timeout=left):
                continue
            chunk = os.read(child.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue
                deadline = time.monotonic() + dsl_timeout()  # each file gets its own time
                yield message
        selector.close()
        outcome.code = child.wait()
        errors.seek(0)
        outcome.stderr = errors.read()[-4000:].decode("utf-8", "replace")


def _positioned(raw: Any, marks: dict[str, list[int]]) -> Mapping:
    """Turn the child's plain data into positioned values, each at its entity's line."""

    def build(value: Any, path: str, mark: Mark) -> Any:
        here = marks.get(path)
        if here is not None:
            mark = (here[0], here[1])
        if isinstance(value, dict):
            mapping = Mapping(mark)
            for key, item in value.items():
                child = f"{path}/{key}" if path else str(key)
                mapping[key] = build(item, child, mark)
                mapping.key_marks[key] = mapping.value_marks[key] = _mark_of(child, mark)
            return mapping
        if isinstance(value, list):
            seq = Sequence(mark)
            for index, item in enumerate(value):
                seq.append(build(item, f"{path}/{index}", mark))
                seq.item_marks.append(mark)
            return seq
        return value

    def _mark_of(path: str, default: Mark) -> Mark:
        here = marks.get(path)
        return (here[0], here[1]) if here is not None else default

    built = build(raw, "", (1, 1))
    assert isinstance(built, Mapping)
    return built


def _child(files: list[str]) -> int:
    """Run each DSL file and report its teams as JSON lines on a private stdout."""
    import runpy

    from dataferry.model import dsl

    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    root = os.getcwd()
    sys.path.insert(0, root)
    for rel in files:
        path = os.path.join(root, rel)
        out.write(json.dumps({"file": rel, "begin": True}) + "\n")
        out.flush()
        dsl._teams.clear()
        dsl._current_file = path
        try:
            runpy.run_path(path, run_name="__ferry_model__")
            teams = [{"raw": t.raw(), "marks": t.marks()} for t in dsl._teams]
            message: dict[str, Any] = {"file": rel, "teams": teams}
            json.dumps(message)
        except BaseException as exc:
            line = None
            for frame in traceback.extract_tb(exc.__traceback__):
                if frame.filename == path:
                    line = frame.lineno
            if isinstance(exc, SyntaxError) and exc.filename == path:
                line = exc.lineno
            kind = type(exc).__name__
            try:
                detail = str(exc)
            except Exception:  # a user exception's __str__ may raise too
                detail = ""
            text = f"{kind}: {detail}" if detail else kind
            message = {"file": rel, "error": f"the Python model file failed: {text}", "line": line}
        out.write(json.dumps(message, default=str) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
