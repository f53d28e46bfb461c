"""Fault injection for the crash-safety tests.

``FERRY_CRASH_AT=<point>`` makes the process kill itself with SIGKILL when it reaches
``crash_point("<point>")``, exactly as a power cut or the OOM killer would, so the tests
can prove that every step of publishing and delivering is safe to interrupt.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Kill this process (SIGKILL) here when ``FERRY_CRASH_AT`` names this point."""
    if os.environ.get("FERRY_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Wait here when ``FERRY_PAUSE_AT`` names this point, until the file
    ``FERRY_PAUSE_UNTIL`` exists (after creating ``<that file>.<pid>`` to say it waits), or
    ``<that file>.<pid>.go`` for this process alone: how the tests line two writers up at
    the same step to race them, together or one after the other."""
    if os.environ.get("FERRY_PAUSE_AT") != name:
        return
    import time
    from pathlib import Path

    release = Path(os.environ["FERRY_PAUSE_UNTIL"])
    waiting = Path(f"{release}.{os.getpid()}")
    waiting.touch()
    alone = Path(f"{waiting}.go")
    deadline = time.monotonic() + 60
    while not release.exists() and not alone.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
